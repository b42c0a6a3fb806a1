"""What a generator backend receives and returns.

Kept free of model and HTTP imports so the composer and tests can use the types without
loading anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Source:
    """A retrieved chunk, numbered as the draft cites it (1-based)."""

    n: int
    chunk_id: int
    document_id: int
    title: str
    heading_path: str
    text: str
    audience: str  # public | internal
    score: float  # fused retrieval score
    similarity: float | None  # cosine similarity to the question (vector leg), if known

    @property
    def public(self) -> bool:
        return self.audience == "public"


@dataclass(frozen=True)
class DraftRequest:
    question: str  # subject + new body text (daemon.kb.query.build_query): untrusted
    sources: list[Source]  # public sources the backend may quote and cite
    guidance: list[Source] = field(default_factory=list)  # internal: may guide, never quoted


@dataclass(frozen=True)
class Generated:
    """A backend's answer (without greeting or closing), or an abstention (``answer`` None)."""

    answer: str | None
    cited: tuple[int, ...] = ()  # source numbers the answer uses
    support: float | None = None  # 0-1: how well the answer addresses the question, when measurable
    note: str | None = None  # why the backend abstained


class BackendError(RuntimeError):
    """A transient generation failure (endpoint down, timeout): the stage retries the message."""


class Backend(Protocol):
    name: str

    @property
    def model(self) -> str:
        """What produced the text (a model name or path), recorded with every draft."""
        ...

    def generate(self, request: DraftRequest) -> Generated: ...
