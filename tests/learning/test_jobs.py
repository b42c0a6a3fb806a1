"""Running a job once per cluster and recording it: lock contention, interrupted runs, abandoning on stop."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from daemon.config import Settings
from daemon.db.locks import advisory_lock
from daemon.db.session import Database
from daemon.learning.jobs import JobResult, job_summary, run_job
from daemon.schedule.scheduler import JobScheduler


def outcomes(db: Database) -> list[tuple[str, str, str]]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(text("SELECT job, outcome, detail FROM job_runs ORDER BY id"))]


def test_a_job_whose_lock_is_held_elsewhere_is_skipped_and_recorded(db: Database) -> None:
    ran: list[int] = []

    def body() -> JobResult:
        ran.append(1)
        return JobResult("demo", "ok", "did it")

    with advisory_lock(db.engine, "demo-lock"):  # another daemon is running it
        result = run_job(db, "demo", "demo-lock", body, instance="b")
    assert result.outcome == "skipped" and "another daemon" in result.detail and not ran
    assert run_job(db, "demo", "demo-lock", body, instance="a").outcome == "ok" and ran == [1]
    assert outcomes(db) == [("demo", "skipped", result.detail), ("demo", "ok", "did it")]
    [summary] = job_summary(db)
    assert summary["outcome"] == "ok" and summary["last_day"] == {"skipped": 1, "ok": 1}


def test_a_run_left_unfinished_is_recorded_as_interrupted_and_an_error_as_failed(db: Database) -> None:
    with db.session() as s, s.begin():
        s.execute(text("INSERT INTO job_runs (job, outcome, instance) VALUES ('demo', 'running', 'dead')"))

    def broken() -> JobResult:
        raise RuntimeError("disk full\nsecond line never shown")

    result = run_job(db, "demo", "demo-lock", broken)
    assert (result.outcome, result.detail) == ("failed", "RuntimeError: disk full")
    rows = outcomes(db)
    assert rows[0][1] == "failed" and rows[0][2].startswith("interrupted")
    assert rows[1] == ("demo", "failed", "RuntimeError: disk full")


def test_the_scheduler_abandons_a_running_job_when_the_daemon_stops(db: Database) -> None:
    scheduler = JobScheduler(Settings(), db, "test")
    release = threading.Event()
    returned = threading.Event()

    def slow() -> JobResult:
        release.wait(60)
        return JobResult("slow", "ok", "")

    threading.Thread(target=lambda: (scheduler._guarded("slow", slow), returned.set()), daemon=True).start()
    time.sleep(0.5)
    assert not returned.is_set()
    started = time.monotonic()
    scheduler.stopping.set()
    assert returned.wait(5) and time.monotonic() - started < 2.5
    release.set()
