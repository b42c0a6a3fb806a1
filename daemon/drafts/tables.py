"""The ``drafts`` table: one reply draft per message, waiting for a person.

``message_id`` is unique, so reprocessing a message (a retry, a requeue, a crash before the
worker recorded the outcome) updates the one draft instead of adding a second. The update
itself is conditional (see ``daemon.drafts.stage``): a draft a person has edited, or one that
has moved on to approved/rejected/sent, is never overwritten.

``text`` is NULL when the draft needs a human: low confidence means we write nothing, and
the reviewer gets the retrieved sources in ``citations`` instead.

``draft_skips`` answers the other question a reviewer asks: why did this message get no
draft at all? One row per message that the stage skipped (a list, an auto-reply, our own
mail, out of the configured scope...), with a stable ``rule`` to count by and the
``reason`` for a person. Writing a draft for the message removes its skip row; a draft that
already exists when a reprocessed message is skipped is left alone (it may be a person's work).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from daemon.db.base import Base

STATUSES = ("pending", "needs_human", "approved", "rejected", "delivered", "sent", "superseded")
"""``delivered``: placed in the account's Drafts folder for the person to send; ``sent``: sent by
SMTP or seen in Sent; ``superseded``: a follow-up in the same thread replaced it. The allowed
transitions and the triggers that enforce them are in ``daemon.review.schema``."""
REWRITABLE = ("pending", "needs_human")
"""Statuses a reprocessing may overwrite (and then only when no person edited the draft)."""
WRITER_SETTING = "mailsense.writer"
STAGE_WRITER = "stage"
"""The drafting stage sets ``mailsense.writer = 'stage'`` for its transaction; any other change of
``drafts.text`` is taken for a person's edit by the review trigger."""


class Draft(Base):
    __tablename__ = "drafts"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'needs_human', 'approved', 'rejected', 'delivered', 'sent', 'superseded')",
            name="status",
        ),
        Index("ix_drafts_status", "status"),
        Index("ix_drafts_thread_key", "thread_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), unique=True
    )
    status: Mapped[str] = mapped_column(String(20))
    text: Mapped[str | None] = mapped_column(Text)  # NULL for needs_human: nothing invented
    # [{"n", "chunk_id", "document_id", "title", "heading_path", "audience", "score", "similarity", "quoted",
    #   "text"}]: "text" is the passage as it was when the draft was written
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list, server_default="[]")
    confidence: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)  # why needs_human, for the reviewer
    backend: Mapped[str] = mapped_column(String(40))
    model: Mapped[str | None] = mapped_column(Text)
    edited_by_human: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    edited_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Review (migration 0010_review; the triggers in daemon.review.schema fill most of these).
    generated_text: Mapped[str | None] = mapped_column(Text)  # the machine's text, kept for edit_similarity
    reviewed_by: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reject_reason: Mapped[str | None] = mapped_column(Text)
    edit_similarity: Mapped[float | None] = mapped_column(Float)  # final vs generated text, 0..1
    superseded_by: Mapped[int | None] = mapped_column(ForeignKey("drafts.id", ondelete="SET NULL"))
    thread_key: Mapped[str | None] = mapped_column(Text)  # root Message-ID of the conversation
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class DraftSkip(Base):
    __tablename__ = "draft_skips"
    __table_args__ = (Index("ix_draft_skips_rule", "rule"),)

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    rule: Mapped[str] = mapped_column(String(40))  # one of daemon.drafts.eligibility.SKIP_RULES
    reason: Mapped[str] = mapped_column(Text)  # for a person: names headers and rules, never message text
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
