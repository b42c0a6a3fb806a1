"""From retrieved chunks to a reply draft: sources, backend, confidence, guard, greeting and closing.

The order matters and is the same for every backend:

1. Number the public chunks as sources (at most ``max_sources``); internal chunks are kept
   apart and only listed for the reviewer (and given to a language model as background when
   ``llm_sees_internal`` is on).
2. No public source, or a language-model backend with retrieval confidence already below
   the threshold: ``needs_human`` without calling the backend.
3. The backend answers or abstains; confidence is computed from retrieval and, when the
   backend measures it, answer support.
4. Below the threshold, or repeating internal text: ``needs_human`` and no text at all,
   because a half-right reply that a busy reviewer sends is worse than none.
5. Otherwise the answer gets a greeting and a closing and the draft is ``pending``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.config.drafts import DraftSettings
from daemon.drafts import confidence
from daemon.drafts.backends.base import Backend, DraftRequest, Source
from daemon.drafts.guard import foreign_links, internal_leak
from daemon.kb.search import SearchHit

MAX_GUIDANCE = 2
_NAME = re.compile(r"^[^\W\d_][^\W\d_'.-]{0,29}$", re.UNICODE)


@dataclass(frozen=True)
class Composition:
    status: str  # pending | needs_human
    text: str | None
    citations: list[dict[str, Any]]
    confidence: float
    reason: str | None
    backend: str
    model: str


def to_sources(hits: Sequence[SearchHit], max_sources: int) -> tuple[list[Source], list[Source]]:
    """(public sources numbered 1..n, internal chunks numbered after them), best first."""
    public = [h for h in hits if h.audience == "public"][:max_sources]
    internal = [h for h in hits if h.audience != "public"][:MAX_GUIDANCE]
    numbered = [
        Source(n, h.chunk_id, h.document_id, h.title, h.heading_path, h.text, h.audience, h.score, h.similarity)
        for n, h in enumerate([*public, *internal], 1)
    ]
    return numbered[: len(public)], numbered[len(public) :]


def greeting(sender_name: str | None) -> str:
    """``Hello Maria,`` when the display name starts with a plausible first name, else ``Hello,``.

    The name is untrusted input: only a single word of letters is used.
    """
    first = (sender_name or "").strip().split(" ")[0].strip("\"'")
    return f"Hello {first}," if first and _NAME.match(first) and "@" not in first else "Hello,"


def render_reply(answer: str, sender_name: str | None, signature: str) -> str:
    return (
        f"{greeting(sender_name)}\n\n"
        "Thank you for your message. Here is what our documentation says:\n\n"
        f"{answer.strip()}\n\n"
        "If this does not solve the problem, just reply to this message and we will look into it.\n\n"
        f"Best regards,\n{signature}"
    )


class Composer:
    def __init__(self, backend: Backend, settings: DraftSettings) -> None:
        self.backend = backend
        self.settings = settings

    def compose(self, question: str, hits: Sequence[SearchHit], sender_name: str | None = None) -> Composition:
        sources, internal = to_sources(hits, self.settings.max_sources)
        signals = confidence.retrieval_signals(
            [h.similarity for h in hits], [h.document_id for h in hits], [h.audience == "public" for h in hits]
        )
        threshold = self.settings.confidence_threshold

        def human(reason: str, conf: float) -> Composition:
            # No text, so nothing is "quoted": the reviewer gets every retrieved source to read.
            return self._result("needs_human", None, sources + internal, (), conf, reason)

        if not question.strip():
            return human("no question text after removing quotes and signature", 0.0)
        if not sources:
            return human("no public knowledge-base source matches", 0.0)
        retrieval_only = confidence.score(signals)
        if self.backend.name != "extractive" and retrieval_only < threshold:
            return human(f"retrieval confidence {retrieval_only:.2f} below {threshold:.2f}", retrieval_only)

        guidance = internal if (self.settings.llm_sees_internal and self.backend.name != "extractive") else []
        generated = self.backend.generate(DraftRequest(question, sources, guidance))
        if generated.answer is None:
            return human(generated.note or "the backend gave no answer", retrieval_only)
        conf = confidence.score(
            confidence.Signals(signals.top_similarity, signals.agreement, generated.support)
        )
        if conf < threshold:
            return human(f"confidence {conf:.2f} below {threshold:.2f}", conf)
        leak = internal_leak(generated.answer, [s.text for s in internal], [s.text for s in sources])
        if leak:
            return human(leak, conf)
        links = foreign_links(generated.answer, [s.text for s in sources])
        if links:
            return human(f"the draft links to {links[0]}, which no knowledge-base source contains", conf)
        text = render_reply(generated.answer, sender_name, self.settings.signature)
        return self._result("pending", text, sources + internal, generated.cited, conf, None)

    def _result(
        self,
        status: str,
        text: str | None,
        sources: Sequence[Source],
        cited: Sequence[int],
        conf: float,
        reason: str | None,
    ) -> Composition:
        citations = [
            {
                "n": s.n,
                "chunk_id": s.chunk_id,
                "document_id": s.document_id,
                "title": s.title,
                "heading_path": s.heading_path,
                "audience": s.audience,
                "score": round(s.score, 4),
                "similarity": None if s.similarity is None else round(s.similarity, 4),
                "quoted": s.n in cited and s.public,
                # The passage as it was: kb sync replaces chunks, the reviewer still reads what the draft used.
                "text": s.text,
            }
            for s in sources
        ]
        return Composition(status, text, citations, conf, reason, self.backend.name, self.backend.model)
