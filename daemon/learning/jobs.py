"""Running a cluster-wide job once and recording it in ``job_runs``.

Every run takes a Postgres advisory lock named after its lock group, so two daemons on one
database never run the same job at once: the second records ``skipped`` ("running on another
daemon") and moves on. Retraining jobs share one group, so a token refresh never races a
fine-tune to promote a version. A run that died with its daemon (``finished_at`` missing) is
marked ``failed`` by the next run of its job, which then holds the lock and knows it is alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text, update

from daemon.db.locks import try_advisory_lock
from daemon.db.session import Database
from daemon.errors import describe_error
from daemon.learning.gate import GateDecision
from daemon.learning.tables import JobRun

log = logging.getLogger(__name__)

RETRAIN_LOCK = "mailsense.learning.retrain"
HOUSEKEEPING_LOCK = "mailsense.learning.housekeeping"


@dataclass
class JobResult:
    """What a run did: ``outcome`` is one of ok, skipped, failed, promoted, rejected."""

    job: str
    outcome: str
    detail: str
    version_id: int | None = None
    decision: GateDecision | None = None
    label_max_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    seconds: float = 0.0


def skipped(job: str, reason: str, label_max_id: int | None = None) -> JobResult:
    return JobResult(job, "skipped", reason, label_max_id=label_max_id)


CLOSE_INTERRUPTED_SQL = text(
    """
    UPDATE job_runs SET outcome = 'failed', finished_at = now(),
           detail = 'interrupted: the daemon running it stopped before it finished'
     WHERE job = :job AND finished_at IS NULL
    """
)


def run_job(db: Database, job: str, lock: str, body: Callable[[], JobResult], instance: str | None = None,
            ) -> JobResult:
    """Run ``body`` under the cluster lock ``lock`` and record the run; never raises for the job's own errors."""
    started = time.monotonic()
    with try_advisory_lock(db.engine, lock) as held:
        if not held:
            result = skipped(job, "already running on another daemon (or by a command)")
            _record(db, _insert_run(db, job, instance), result, started)
            return result
        with db.session() as session, session.begin():
            session.execute(CLOSE_INTERRUPTED_SQL, {"job": job})
        run_id = _insert_run(db, job, instance)
        try:
            result = body()
        except Exception as exc:
            log.exception("job %s failed", job)
            result = JobResult(job, "failed", describe_error(exc))
        _record(db, run_id, result, started)
    log.info("job %s: %s (%s) in %.1fs", job, result.outcome, result.detail, result.seconds)
    return result


def _insert_run(db: Database, job: str, instance: str | None) -> int:
    with db.session() as session, session.begin():
        row = JobRun(job=job, instance=instance, outcome="running")
        session.add(row)
        session.flush()
        return row.id


def _record(db: Database, run_id: int, result: JobResult, started: float) -> None:
    result.run_id = run_id
    result.seconds = time.monotonic() - started
    data = dict(result.data)
    if result.decision is not None:
        data["gate"] = result.decision.to_json()
    with db.session() as session, session.begin():
        session.execute(update(JobRun).where(JobRun.id == run_id).values(
            outcome=result.outcome, detail=result.detail[:2000], finished_at=func.now(),
            version_id=result.version_id, label_max_id=result.label_max_id, data=data or None))


def last_trained_label_id(db: Database, job: str) -> int | None:
    """Newest label id the last retrain of ``job`` that produced a version (promoted or rejected) saw."""
    with db.session() as session:
        return session.scalar(select(func.max(JobRun.label_max_id)).where(
            JobRun.job == job, JobRun.outcome.in_(("promoted", "rejected"))))


RECENT_RUNS_SQL = text(
    """
    SELECT DISTINCT ON (job) job, started_at, finished_at, outcome, detail, instance, version_id,
           EXTRACT(EPOCH FROM finished_at - started_at) AS seconds
      FROM job_runs
     ORDER BY job, started_at DESC, id DESC
    """
)

COUNTS_SQL = text(
    """
    SELECT job, outcome, count(*) AS n FROM job_runs
     WHERE started_at > now() - interval '1 day'
     GROUP BY 1, 2
    """
)


def job_summary(db: Database) -> list[dict[str, Any]]:
    """Per job: its last run and the outcomes of the last 24 hours (for ``mailsense status``)."""
    with db.session() as session:
        last = [dict(r._mapping) for r in session.execute(RECENT_RUNS_SQL)]
        counts: dict[str, dict[str, int]] = {}
        for job, outcome, n in session.execute(COUNTS_SQL):
            counts.setdefault(str(job), {})[str(outcome)] = int(n)
    for row in last:
        row["last_day"] = counts.get(str(row["job"]), {})
    return last
