"""What delivery keeps: columns on ``drafts`` and one checkpoint per account's Sent folder.

Columns added to ``drafts`` (migration ``0011_delivery``; queried by SQL in ``daemon.delivery.store``
rather than mapped here, so the drafts package keeps the one mapping of its table):

- ``outgoing_message_id`` (unique): the reply's Message-ID, chosen and committed before the first
  delivery attempt. A retry looks for it in the mailbox before delivering again.
- ``delivery_attempts``, ``delivery_error``, ``delivery_next_at``: retries with backoff.
- ``delivery_phase``: ``delivering`` while an attempt runs; ``smtp_data`` once the SMTP DATA
  command may have reached the server; ``held`` when a crash left an SMTP send's fate unknown
  (never resent automatically: a person decides).
- ``delivered_at``, ``delivered_via`` (``drafts_folder`` | ``smtp``), ``delivered_sha256`` (the
  bytes put into Drafts, to recognise a draft nobody touched).
- ``outcome`` (``sent_as_drafted`` | ``sent_after_edits`` | ``replied_without_draft`` |
  ``discarded``), ``sent_similarity``, ``outcome_at``: what the person did.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from daemon.db.base import Base

OUTCOMES = ("sent_as_drafted", "sent_after_edits", "replied_without_draft", "discarded")


class SentCheckpoint(Base):
    """How far the account's Sent folder has been read for replies (by UID, like ingestion)."""

    __tablename__ = "sent_checkpoints"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    folder: Mapped[str] = mapped_column(Text)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
