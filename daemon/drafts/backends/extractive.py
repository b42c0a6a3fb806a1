"""The offline default: answer with the knowledge base's own sentences and steps.

Nothing is generated, so nothing can be invented: every sentence of the answer is copied
from a retrieved public chunk. The work is choosing *which* sentences:

1. The best-ranked public source is the primary one (retrieval already put the answering
   section first in most cases; see docs/benchmarks.md). Its sentences and list items are
   scored against the question with the embedding model.
2. Sentences scoring within ``margin`` of the best one are kept, in document order, and the
   gaps between kept sentences are filled when small. A kept list item brings its whole list,
   and so does a kept sentence that introduces one: a procedure whose later steps score lower
   is still a procedure, and a reply with step 3 missing is worse than a longer one.
3. Navigation just before the kept sentences ("From Settings, tap Sound.") is added, or taken
   from an earlier retrieved chunk of the same section: the sentence that answers often names
   the option, and the one before it says where to find it.
4. Another source adds its single best sentence only when that sentence is about as good as
   the primary's best (a second document that answers a second part of the question), and
   never a sentence already quoted (nested manual sections repeat their children's text).

``support`` is the mean similarity of the kept sentences to the question: the
answer-support part of the confidence.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from daemon.drafts.backends.base import DraftRequest, Generated, Source

if TYPE_CHECKING:
    from daemon.kb.embeddings import Embedder

# Sentence ends, including the glued "settings.From" of text extracted from HTML manuals.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[a-z][.!?])(?=[A-Z][a-z])")
_ITEM = re.compile(r"^(?:[-*+•]|\d{1,3}[.)])\s+")
# Where to find something: "From Settings, tap Display.", "Go to Settings > Sound", "Open Apps > Clock".
_NAVIGATION = re.compile(r"^(?:\d{1,3}[.)]\s+)?(?:from|go to|open|navigate to)\b|\S\s>\s\S", re.IGNORECASE)
_MIN_CHARS = 12  # shorter fragments ("See .", "Tap") carry no answer on their own
_MAX_UNIT_CHARS = 400


@dataclass(frozen=True)
class Unit:
    """A sentence or list item of a source, with where it came from."""

    source: int  # Source.n
    line: int  # line (paragraph or list item) within the chunk: units of one line are joined with a space
    position: int  # order within the chunk
    text: str
    steps: int | None = None  # the run of consecutive list items this unit belongs to, if any


def split_units(source: Source) -> list[Unit]:
    """Sentences and list items of a chunk, in order, without fragments too short to answer.

    A list item keeps its marker ("2. ") and knows its run of consecutive items, so that a
    procedure can be quoted whole.
    """
    units: list[Unit] = []
    run: int | None = None
    lines = [" ".join(line.split()) for line in source.text.replace("\r\n", "\n").split("\n")]
    for line_no, line in enumerate(lines):
        if not line:
            run = None  # a blank line ends a list
            continue
        marker = _ITEM.match(line)
        run = (line_no if run is None else run) if marker else None
        body = line[marker.end() :] if marker else line
        first = True
        for sentence in _SENTENCE_END.split(body):
            sentence = sentence.strip()
            if len(sentence) < _MIN_CHARS:
                continue
            if len(sentence) > _MAX_UNIT_CHARS:
                sentence = sentence[:_MAX_UNIT_CHARS].rsplit(" ", 1)[0] + " …"
            if marker and first:
                sentence = marker.group(0) + sentence
            first = False
            units.append(Unit(source.n, line_no, len(units), sentence, run))
    return units


class ExtractiveBackend:
    name = "extractive"

    def __init__(
        self,
        embedder: Embedder,
        max_sentences: int = 6,
        margin: float = 0.2,
        max_gap: int = 2,
        second_source_margin: float = 0.03,
        lead_in: int = 3,
    ) -> None:
        self.embedder = embedder
        self.max_sentences = max_sentences
        self.margin = margin
        self.max_gap = max_gap
        self.second_source_margin = second_source_margin
        self.lead_in = lead_in

    @property
    def model(self) -> str:
        return f"extractive+{self.embedder.name}"

    def generate(self, request: DraftRequest) -> Generated:
        sources = [s for s in request.sources if s.public]  # the composer sends only public ones; be sure
        units_by_source = {s.n: split_units(s) for s in sources}
        all_units = [u for s in sources for u in units_by_source[s.n]]
        if not all_units or not request.question.strip():
            return Generated(None, note="no quotable sentence in the sources")
        vectors = self.embedder.embed([request.question] + [u.text for u in all_units])
        scores = vectors[1:] @ vectors[0]
        score_of = {(u.source, u.position): float(s) for u, s in zip(all_units, scores, strict=True)}

        primary = next(s for s in sources if units_by_source[s.n])
        chosen, relevant = self._select(units_by_source[primary.n], score_of)
        best = max(relevant)
        chosen = self._navigation(primary, sources, units_by_source, chosen)
        extra: list[Unit] = []
        seen = {_normal(u.text) for u in chosen}
        for other in sources:
            if other.n == primary.n or not units_by_source[other.n] or len(chosen) + len(extra) >= self.max_sentences:
                continue
            top = max(units_by_source[other.n], key=lambda u: score_of[(u.source, u.position)])
            # Nested sections repeat their children's text: a sentence already quoted is not quoted twice.
            close = score_of[(top.source, top.position)] >= best - self.second_source_margin
            if close and _normal(top.text) not in seen:
                extra.append(top)
                seen.add(_normal(top.text))
        kept = chosen + extra
        # Support counts the sentences chosen for relevance, not the steps and navigation around them.
        support = float(np.mean(relevant + [score_of[(u.source, u.position)] for u in extra]))
        return Generated(
            answer=render(kept),
            cited=tuple(dict.fromkeys(u.source for u in kept)),
            support=max(0.0, min(1.0, support)),
        )

    def _navigation(
        self, primary: Source, sources: list[Source], units_by_source: dict[int, list[Unit]], chosen: list[Unit]
    ) -> list[Unit]:
        """Without a step in the answer, the first step of an earlier chunk of the same section comes first.

        A long section is cut into chunks; the option that answers may sit in the second chunk and
        "From Settings, tap ..." in the first. Only retrieved chunks are looked at.
        """
        if any(_NAVIGATION.search(u.text) for u in chosen) or len(chosen) >= self.max_sentences:
            return chosen
        for other in sources:
            if other.n == primary.n or other.document_id != primary.document_id:
                continue
            step = next((u for u in units_by_source[other.n] if _NAVIGATION.search(u.text)), None)
            if step is not None:
                return [step, *chosen]
        return chosen

    def _select(self, units: list[Unit], score_of: dict[tuple[int, int], float]) -> tuple[list[Unit], list[float]]:
        """The units to quote from one source, and the scores of those chosen for relevance."""
        scores = [score_of[(u.source, u.position)] for u in units]
        best = max(scores)
        keep = [i for i, s in enumerate(scores) if s >= best - self.margin]
        # Fill small gaps: the steps between two relevant steps belong to the answer.
        filled = set(keep)
        for a, b in itertools.pairwise(keep):
            if b - a - 1 <= self.max_gap:
                filled.update(range(a + 1, b))
        # A chosen step brings its whole procedure; so does the sentence just before a procedure.
        for i in list(filled):
            run = units[i].steps
            following = units[i + 1] if i + 1 < len(units) else None
            if run is None and following is not None and following.steps is not None:
                run = following.steps
            if run is not None:
                filled.update(j for j, u in enumerate(units) if u.steps == run)
        # The way there: navigation ("From Settings, tap Sound.") just before the answer belongs to it.
        first = min(filled)
        for j in range(first - 1, max(first - 1 - self.lead_in, -1), -1):
            if not _NAVIGATION.search(units[j].text):
                break
            filled.add(j)
        ordered = sorted(filled)
        if len(ordered) > self.max_sentences:
            # Keep the best window of max_sentences consecutive units: steps stay in one piece.
            windows = [ordered[i : i + self.max_sentences] for i in range(len(ordered) - self.max_sentences + 1)]
            ordered = max(windows, key=lambda w: sum(scores[i] for i in w))
        picked: list[Unit] = []
        picked_texts: set[str] = set()
        for i in ordered:
            normal = _normal(units[i].text)
            if normal not in picked_texts:
                picked.append(units[i])
                picked_texts.add(normal)
        return picked, [scores[i] for i in keep if i in ordered] or [best]


def _normal(text: str) -> str:
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def render(units: list[Unit]) -> str:
    """Units of one source line are joined into a paragraph; lines and sources are kept apart."""
    paragraphs: list[str] = []
    previous: tuple[int, int] | None = None
    for unit in units:
        key = (unit.source, unit.line)
        if key == previous:
            paragraphs[-1] += " " + unit.text
        else:
            paragraphs.append(unit.text)
        previous = key
    return "\n".join(paragraphs)
