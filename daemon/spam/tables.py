"""Tables of the spam stage: trained model versions and spam/ham labels.

The verdict itself lives on ``messages`` (``spam_verdict``, ``spam_score``,
``spam_model_version_id``, ``classified_at``; added by migration ``0002_spam``) because it is
part of the message's progress through the pipeline.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
)
from sqlalchemy import text as sql_text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from daemon.db.base import Base


class ModelVersion(Base):
    """A trained model directory and what we know about it; every version is kept for rollback.

    At most one version per ``kind`` is active (a partial unique index enforces it), so a
    daemon that loads "the active spam model" can never find two.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        Index("uq_model_versions_active_kind", "kind", unique=True, postgresql_where=sql_text("active")),
        CheckConstraint("status IN ('candidate', 'active', 'retired', 'rejected')", name="status"),
        CheckConstraint("active = (status = 'active')", name="active_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), default="spam", server_default="spam")
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    base_model: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    thresholds: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    text_settings: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    active: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    # Added by migration 0009_jobs. ``status`` says where the version stands; the registry keeps
    # it and ``active`` in step (``active`` is true exactly when ``status`` is 'active').
    status: Mapped[str] = mapped_column(String(20), default="candidate", server_default="candidate")
    gate: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """The promotion gate's figures and decision (daemon/learning/gate.py), None for versions not gated."""
    labels_used: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """Which labels trained it: counts by source and class, label id and time ranges, the held-out share."""
    sha256: Mapped[str | None] = mapped_column(String(64))
    """Checksum of the stored artifact manifest (daemon/spam/artifacts.py); None until stored."""
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When it last became active: ``mailsense models rollback`` returns to the version active before."""



class ModelBlob(Base):
    """One file of a model version, stored once by content (a refreshed version shares its transformer)."""

    __tablename__ = "model_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ModelBlobChunk(Base):
    """A blob in pieces of at most a few MB, so no single value has to fit in memory twice."""

    __tablename__ = "model_blob_chunks"

    sha256: Mapped[str] = mapped_column(ForeignKey("model_blobs.sha256", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ModelArtifact(Base):
    """A file of a version directory: its relative path and the blob holding its bytes."""

    __tablename__ = "model_artifacts"

    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("model_blobs.sha256"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)


class SpamLabel(Base):
    """A person's (or an import's) statement that a stored message is spam or ham.

    Labels are appended, never updated: the newest per message counts, the history explains it.
    """

    __tablename__ = "spam_labels"
    __table_args__ = (
        CheckConstraint("label IN ('spam', 'ham')", name="label"),
        Index("ix_spam_labels_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(10))
    # user_move | client_keyword | replied_thread | wrote_to_sender | bootstrap | cli | review | import
    source: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Added by migration 0008_labels: the account (for counts per mailbox), what happened ("moved from
    # Junk to INBOX"), and how much the label counts in training (implicit evidence weighs less).
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    detail: Mapped[str | None] = mapped_column(Text)
    weight: Mapped[float] = mapped_column(Float, default=1.0, server_default="1")
