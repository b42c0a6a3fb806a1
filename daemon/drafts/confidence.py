"""How sure a draft is, from 0 to 1, and so whether a person must write the reply instead.

Two signals, both cosine similarities of the bundled embedding model:

* retrieval: the similarity of the best public chunk to the question. A question the
  knowledge base cannot answer still gets a nearest chunk, but a distant one.
* support (extractive backend): the mean similarity of the quoted sentences to the
  question. A section can be on the right topic while no sentence in it answers.

The mix is mapped linearly from ``[LOW, HIGH]`` onto ``[0, 1]``. The constants and the
default threshold (0.4 in ``DraftSettings``) were chosen on the benchmark sets, with
questions the KB cannot answer mixed in (bench/draft_eval.py, docs/benchmarks.md "Drafts");
another embedding model needs them measured again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

LOW = 0.25
HIGH = 0.65
SUPPORT_WEIGHT = 0.5


@dataclass(frozen=True)
class Signals:
    top_similarity: float  # best public chunk's cosine similarity to the question
    agreement: float  # share of the top 3 hits from the best public chunk's document (reported, not scored)
    support: float | None = None


def retrieval_signals(
    similarities: Sequence[float | None], documents: Sequence[int], public: Sequence[bool]
) -> Signals:
    """Signals from the hits, best first (``similarities`` None for chunks found by full text only)."""
    public_sims = [s or 0.0 for s, p in zip(similarities, public, strict=True) if p]
    top = max(public_sims, default=0.0)
    first_public = next((d for d, p in zip(documents, public, strict=True) if p), None)
    top3 = list(documents[:3])
    agreement = sum(d == first_public for d in top3) / len(top3) if top3 and first_public is not None else 0.0
    return Signals(top_similarity=top, agreement=agreement)


def score(signals: Signals) -> float:
    value = signals.top_similarity
    if signals.support is not None:
        value = (1 - SUPPORT_WEIGHT) * signals.top_similarity + SUPPORT_WEIGHT * signals.support
    return round(min(1.0, max(0.0, (value - LOW) / (HIGH - LOW))), 4)
