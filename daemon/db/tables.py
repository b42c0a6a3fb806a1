"""Core tables: accounts, watched folders and messages.

A message row is the unit of exactly-once processing: it is committed (with the raw RFC 822
bytes) before anything else happens to it, and ``stage`` says which pipeline stage runs next.
Stages of later features add their own tables or columns in their own modules.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from daemon.db.base import Base


class Account(Base):
    """A mailbox as named in the configuration; rows are created on first sight."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    folders: Mapped[list[Folder]] = relationship(back_populates="account")


class Folder(Base):
    """A watched IMAP folder and its ingestion checkpoint.

    ``last_uid`` only ever moves forward together with the commit of the message rows up to
    it, so a crash at any point resumes from a UID whose messages are all stored.
    """

    __tablename__ = "folders"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(500))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    highest_modseq: Mapped[int | None] = mapped_column(BigInteger)
    connected: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    connected_by: Mapped[str | None] = mapped_column(String(200))
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Where ingestion began on first connect: mail at or below start_uid was there before Mailsense
    # and is never processed. start_from says how it was chosen ("new mail only", "since 2026-11-25").
    start_uid: Mapped[int | None] = mapped_column(BigInteger)
    start_from: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    account: Mapped[Account] = relationship(back_populates="folders")


class Message(Base):
    """One received message, raw bytes first, parsed fields filled by the parse stage."""

    __tablename__ = "messages"
    __table_args__ = (
        # Where the message sits on the server; NULL for SMTP ingress and imports.
        UniqueConstraint("folder_id", "uidvalidity", "uid", name="uq_messages_location"),
        # The same bytes delivered or listed twice are one message (Message-ID is inside the hash).
        UniqueConstraint("account_id", "content_sha256", name="uq_messages_content"),
        Index(
            "ix_messages_claimable",
            "stage",
            "next_attempt_at",
            postgresql_where=text("stage NOT IN ('done', 'quarantined', 'parked')"),
        ),
        Index("ix_messages_message_id", "account_id", "message_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id", ondelete="SET NULL"))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(20))  # imap | smtp | import
    message_id: Mapped[str | None] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    # Filled by the parse stage.
    subject: Mapped[str | None] = mapped_column(Text)
    from_name: Mapped[str | None] = mapped_column(Text)
    from_addr: Mapped[str | None] = mapped_column(Text)
    to_addrs: Mapped[list[str] | None] = mapped_column(JSONB)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    body_text: Mapped[str | None] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    parse_defects: Mapped[list[str] | None] = mapped_column(JSONB)

    # Filled by the classify stage (columns added by migration 0002_spam).
    spam_verdict: Mapped[str | None] = mapped_column(Text)  # spam | unsure | ham
    spam_score: Mapped[float | None] = mapped_column(Float)
    # The foreign key to model_versions lives in the migration; declaring it here would make the
    # core models depend on the spam package being imported.
    spam_model_version_id: Mapped[int | None] = mapped_column(Integer)
    classified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Work-queue state (see daemon/db/queue.py for the claim SQL).
    stage: Mapped[str] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Claims at the current stage: a message that kills its worker is claimed again and again
    # without an attempt being recorded; counting claims lets it be parked all the same.
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    parked_stage: Mapped[str | None] = mapped_column(String(40))
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


class Instance(Base):
    """One running daemon (or command that takes work), told apart by a random id, not host and pid.

    Its ``heartbeat_at`` moves while it lives; leases held by an instance whose heartbeat is stale
    may be taken over. Two containers with the same host name and pid are still two instances.
    """

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(Text)
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    stopped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
