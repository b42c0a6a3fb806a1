"""What a reviewer reads: the queue of drafts awaiting review, and one draft in full.

``list_queue`` reads the ``review_queue`` view (so it shows what ``SELECT * FROM review_queue``
shows); ``draft_detail`` gathers the customer's message, the draft, its sources with the passage
text as it was when the draft was written, and the review fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from daemon.db.tables import Account, Message
from daemon.drafts.tables import Draft
from daemon.kb.query import strip_quoted
from daemon.kb.tables import KBChunk
from daemon.review.actions import ReviewError
from daemon.review.schema import AWAITING_REVIEW


@dataclass(frozen=True)
class QueueItem:
    """One row of ``review_queue``: a draft awaiting review and the message it answers."""

    draft_id: int
    message_id: int
    status: str
    confidence: float
    reason: str | None
    sender: str | None
    sender_address: str | None
    subject: str | None
    received_at: datetime
    sent_at: datetime | None
    account: str
    spam_verdict: str | None
    spam_score: float | None
    preview: str
    edited_by_human: bool
    sources: int
    thread_key: str | None
    created_at: datetime


@dataclass(frozen=True)
class Source:
    """A cited or retrieved knowledge-base passage. ``text`` is the snapshot stored with the draft,
    else the current passage when the chunk still exists, else None."""

    n: int
    title: str
    heading_path: str
    audience: str
    quoted: bool
    score: float | None
    text: str | None


@dataclass(frozen=True)
class DraftDetail:
    """Everything a reviewer needs to decide on one draft."""

    draft_id: int
    message_id: int
    account: str
    sender: str | None
    sender_address: str | None
    subject: str | None
    sent_at: datetime | None
    received_at: datetime
    message_text: str  # the whole body
    new_text: str  # the body above the quoted history: what the customer wrote now
    has_quoted_history: bool
    spam_verdict: str | None
    spam_score: float | None
    status: str
    text: str | None
    generated_text: str | None
    confidence: float
    reason: str | None
    backend: str
    model: str | None
    sources: list[Source] = field(default_factory=list)
    edited_by_human: bool = False
    edited_at: datetime | None = None
    edit_similarity: float | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    reject_reason: str | None = None
    superseded_by: int | None = None
    thread_key: str | None = None
    created_at: datetime | None = None


QUEUE_SQL = "SELECT * FROM review_queue"


def list_queue(session: Session, status: str | None = None, limit: int = 50) -> list[QueueItem]:
    """Drafts awaiting review, oldest first; ``status`` narrows to pending or needs_human."""
    if status is not None and status not in AWAITING_REVIEW:
        raise ReviewError(f"the review queue holds {' and '.join(AWAITING_REVIEW)} drafts, not {status!r}")
    sql = QUEUE_SQL + (" WHERE status = :status" if status else "") + " ORDER BY created_at, draft_id LIMIT :limit"
    rows = session.execute(text(sql), {"status": status, "limit": limit}).mappings()
    return [QueueItem(**row) for row in rows]


def draft_detail(session: Session, draft_id: int) -> DraftDetail:
    row = session.execute(
        select(Draft, Message, Account.name)
        .join(Message, Message.id == Draft.message_id)
        .join(Account, Account.id == Message.account_id)
        .where(Draft.id == draft_id)
    ).one_or_none()
    if row is None:
        raise ReviewError(f"there is no draft {draft_id}")
    draft, message, account = row
    body = message.body_text or ""
    new_text = strip_quoted(body).strip()
    sender = f"{message.from_name} <{message.from_addr}>" if message.from_name else message.from_addr
    return DraftDetail(
        draft_id=draft.id, message_id=message.id, account=account,
        sender=sender, sender_address=message.from_addr, subject=message.subject,
        sent_at=message.sent_at, received_at=message.received_at,
        message_text=body, new_text=new_text, has_quoted_history=new_text != body.strip(),
        spam_verdict=message.spam_verdict, spam_score=message.spam_score,
        status=draft.status, text=draft.text, generated_text=draft.generated_text,
        confidence=draft.confidence, reason=draft.reason, backend=draft.backend, model=draft.model,
        sources=_sources(session, draft.citations or []),
        edited_by_human=draft.edited_by_human, edited_at=draft.edited_at, edit_similarity=draft.edit_similarity,
        reviewed_by=draft.reviewed_by, reviewed_at=draft.reviewed_at, reject_reason=draft.reject_reason,
        superseded_by=draft.superseded_by, thread_key=draft.thread_key, created_at=draft.created_at,
    )


def _sources(session: Session, citations: list[dict[str, Any]]) -> list[Source]:
    """Citations with their passage text: the stored snapshot, else the chunk if it still exists."""
    missing = [c["chunk_id"] for c in citations if not c.get("text") and c.get("chunk_id") is not None]
    current: dict[int, str] = {}
    if missing:
        current = dict(session.execute(select(KBChunk.id, KBChunk.text).where(KBChunk.id.in_(missing))).tuples().all())
    return [
        Source(
            n=int(c.get("n", i)),
            title=str(c.get("title", "")),
            heading_path=str(c.get("heading_path", "")),
            audience=str(c.get("audience", "public")),
            quoted=bool(c.get("quoted", False)),
            score=c.get("score"),
            text=c.get("text") or current.get(c.get("chunk_id", -1)),
        )
        for i, c in enumerate(citations, 1)
    ]
