"""The ``job_runs`` table: every run of a scheduled job, with its outcome and why.

One row per run on whichever daemon ran it (``instance``); a run that found the job already
running elsewhere, or nothing to do, is recorded as ``skipped`` with the reason, so "why did the
model not retrain?" is answered by ``mailsense status`` instead of by reading logs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, Index, Integer, String, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from daemon.db.base import Base


class JobRun(Base):
    __tablename__ = "job_runs"
    __table_args__ = (
        CheckConstraint("outcome IN ('running', 'ok', 'skipped', 'failed', 'promoted', 'rejected')",
                        name="outcome"),
        Index("ix_job_runs_job_started", "job", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    job: Mapped[str] = mapped_column(String(40))  # token_refresh | fine_tune | housekeeping | kb_sync
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    outcome: Mapped[str] = mapped_column(String(20), default="running", server_default="running")
    detail: Mapped[str | None] = mapped_column(Text)
    """For a person: why it skipped, the gate's reason, the error."""
    instance: Mapped[str | None] = mapped_column(String(64))
    version_id: Mapped[int | None] = mapped_column(Integer)
    """The model version a retrain produced (promoted or rejected)."""
    label_max_id: Mapped[int | None] = mapped_column(BigInteger)
    """Newest ``spam_labels.id`` the run saw: a later run with no newer label has nothing new to learn."""
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
