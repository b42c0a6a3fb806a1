"""Tables of the correction tracker and the bootstrap: what the mailbox looked like when we last looked.

A correction is a change between two looks at the mailbox: a message that was outside Junk shows up
inside it, or the other way round. So the tracker keeps, per account,

* ``learning_folders``: each folder's UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ at the last look, so
  that one STATUS per folder tells whether anything happened there since (nothing to fetch when not);
* ``learning_places``: where each known message was last seen (``junk``, ``trash`` or ``other``,
  with folder and UID), and whether our own filing's move into Junk was already accounted for;
* ``learning_correspondents``: addresses the account wrote to (From one of its own addresses, seen
  in Sent or any other folder), the "wrote to the sender" ham evidence;
* ``learning_bootstraps``: the one-time bootstrap per account, so it runs once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from daemon.db.base import Base

JUNK, TRASH, OTHER = "junk", "trash", "other"


class LearningFolder(Base):
    __tablename__ = "learning_folders"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(500), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid_next: Mapped[int] = mapped_column(BigInteger)
    highest_modseq: Mapped[int | None] = mapped_column(BigInteger)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LearningPlace(Base):
    __tablename__ = "learning_places"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))  # junk | trash | other
    folder: Mapped[str] = mapped_column(String(500))
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    uid: Mapped[int | None] = mapped_column(BigInteger)
    # Our filing stage moved it into Junk (mail_actions) and that arrival was seen: it was no label.
    filing_seen: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LearningCorrespondent(Base):
    __tablename__ = "learning_correspondents"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(Text, primary_key=True)  # lower-cased
    messages: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LearningBootstrap(Base):
    __tablename__ = "learning_bootstraps"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    spam: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ham: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    detail: Mapped[str | None] = mapped_column(Text)
