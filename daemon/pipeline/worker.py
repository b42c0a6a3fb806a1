"""Pipeline workers: claim due messages, run their stage, record the outcome.

Several workers in one daemon, and several daemons on one database, cooperate only through
the claim SQL in ``daemon.db.queue``; there is no other coordinator.

A worker claims for one stage at a time, as many messages as that stage's ``batch_size`` (a
draft made by a local model takes about 30 s, a parse a few milliseconds: one size for all would
either starve the fast stages or hand a slow stage more than it can finish). While the stage
runs, a lease keeper renews the batch's leases, so no other worker takes messages that are still
being worked on. A batch may use ``lease_seconds`` per message; past that the keeper lets the
leases run out and the worker counts as stuck, which stops the systemd watchdog pings and makes
/healthz answer 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

from prometheus_client import Gauge
from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from daemon.config import PipelineSettings
from daemon.db import queue
from daemon.db.session import Database
from daemon.db.tables import Message
from daemon.errors import describe_error
from daemon.metrics import REGISTRY, STAGE_OUTCOMES, STAGE_SECONDS
from daemon.pipeline.router import Pipeline
from daemon.pipeline.stage import DependencyDown, Outcome

log = logging.getLogger(__name__)

PASS_THROUGH_BATCH = 100  # messages moved on per claim at a switched-off stage

WORKER_PROGRESS = Gauge(
    "mailsense_worker_progress_timestamp_seconds",
    "When the worker last finished a batch or found nothing to claim (Unix time)", ["worker"],
    registry=REGISTRY,
)


@dataclass(frozen=True)
class Batch:
    """What a worker has in hand: claimed at ``started``, counted as stuck after ``deadline`` (monotonic)."""

    stage: str
    ids: tuple[int, ...]
    started: float
    deadline: float


class LeaseKeeper:
    """Renews a batch's leases every third of ``lease_seconds`` until stopped or past the batch's deadline.

    A thread of its own, because the stage holds the worker's thread and may not return for minutes.
    """

    def __init__(self, db: Database, batch: Batch, owner: str, lease_seconds: float) -> None:
        self.db = db
        self.batch = batch
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease:{owner}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = self.lease_seconds / 3
        failing = False
        while not self._stop.wait(interval):
            if time.monotonic() > self.batch.deadline:
                log.error("worker %s: batch of %d at stage %s still running after %.0fs (%.0fs per message); "
                          "its leases are left to run out and the worker counts as stuck", self.owner,
                          len(self.batch.ids), self.batch.stage, time.monotonic() - self.batch.started,
                          self.lease_seconds)
                return
            try:
                with self.db.session() as session:
                    queue.renew(session, self.batch.ids, self.owner, self.lease_seconds)
                failing = False
            except Exception as exc:  # the database is away: the leases may run out, the outcome is still checked
                if not failing:
                    log.warning("worker %s: cannot renew leases: %s", self.owner, describe_error(exc))
                    failing = True


class Worker:
    def __init__(self, name: str, db: Database, pipeline: Pipeline, settings: PipelineSettings) -> None:
        self.name = name
        self.db = db
        self.pipeline = pipeline
        self.settings = settings
        self.wakeup = asyncio.Event()
        self.current: Batch | None = None  # the batch in hand, for /healthz and the watchdog
        self.last_progress = time.monotonic()
        self.failing: str | None = None  # the database error this worker backs off from

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; a batch in flight is finished, never abandoned half-way."""
        idle_delay = self.settings.poll_seconds
        while not stop.is_set():
            try:
                worked = await asyncio.to_thread(self.run_once)
                if self.failing:
                    log.info("worker %s: working again", self.name)
                    self.failing = None
                idle_delay = self.settings.poll_seconds
            except Exception as exc:  # database down: back off, log once per outage
                worked = False
                if not self.failing:
                    log.error("worker %s: %s; retrying with backoff", self.name, describe_error(exc))
                self.failing = describe_error(exc)
                idle_delay = min(idle_delay * 2, 60.0)
            if worked:
                continue
            self.wakeup.clear()
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self.wakeup.wait())]
            await asyncio.wait(waiters, timeout=idle_delay, return_when=asyncio.FIRST_COMPLETED)
            for task in waiters:
                task.cancel()

    # -- health --------------------------------------------------------------------------------

    def stuck(self, now: float | None = None) -> bool:
        """In a batch past its deadline (``lease_seconds`` per message); an idle worker is never stuck."""
        batch = self.current
        return batch is not None and (time.monotonic() if now is None else now) > batch.deadline

    def progress(self, now: float | None = None) -> dict[str, object]:
        """This worker's state for /healthz."""
        now = time.monotonic() if now is None else now
        batch = self.current
        state = "stuck" if self.stuck(now) else "working" if batch else "failing" if self.failing else "idle"
        return {
            "name": self.name,
            "state": state,
            "stage": batch.stage if batch else None,
            "batch": len(batch.ids) if batch else 0,
            "busy_seconds": round(now - batch.started, 1) if batch else None,
            "last_progress_seconds_ago": round(now - self.last_progress, 1),
            "error": self.failing,
        }

    def _progressed(self) -> None:
        self.last_progress = time.monotonic()
        WORKER_PROGRESS.labels(self.name).set(time.time())

    # -- work ----------------------------------------------------------------------------------

    def _ready_stages(self) -> list[str]:
        return [name for name, reason in self.pipeline.claimable().items() if reason is None]

    def run_once(self) -> bool:
        """Claim and process one batch of one stage; return whether there was any work."""
        stages = self._ready_stages()
        if not stages:
            self._progressed()
            return False
        with self.db.session() as session:
            for stage_name in queue.due_stages(session, stages):
                stage = self.pipeline.stages.get(stage_name)
                parked: list[queue.Parked] = []
                claimed = queue.claim(
                    session, [stage_name], self.name, stage.batch_size if stage else PASS_THROUGH_BATCH,
                    self.settings.lease_seconds, max_claims=self.settings.max_attempts, parked=parked,
                )
                for item in parked:
                    STAGE_OUTCOMES.labels(item.stage, "parked_claims").inc()
                    log.error("message %d parked at %s: claimed %d times without finishing (the worker died "
                              "with it each time)", item.id, item.stage, item.claims)
                if claimed or parked:
                    break
            else:
                self._progressed()
                return False
        if claimed:
            self._process(stage_name, [item.id for item in claimed])
        self._progressed()
        return True

    def _process(self, stage_name: str, ids: list[int]) -> None:
        started = time.monotonic()
        batch = Batch(stage_name, tuple(ids), started, started + self.settings.lease_seconds * len(ids))
        self.current = batch
        try:
            with self.db.session() as session, LeaseKeeper(self.db, batch, self.name, self.settings.lease_seconds):
                outcomes = self._run_stage(session, stage_name, ids)
                if outcomes is None:
                    return
                STAGE_SECONDS.labels(stage_name).observe(time.monotonic() - started)
                self._record(session, stage_name, ids, outcomes)
        finally:
            self.current = None

    def _run_stage(self, session: Session, stage_name: str, ids: list[int]) -> dict[int, Outcome] | None:
        """The stage's outcome per message, or None when its service is down and the batch went back."""
        stage = self.pipeline.stages.get(stage_name)
        if stage is None:  # switched off: pass through
            return {i: Outcome.next() for i in ids}
        # raw is loaded only by a stage that reads it (parse), one message at a time:
        # a batch of 32 with 20 MB attachments must not sit in memory at once.
        messages = list(session.execute(
            select(Message).options(defer(Message.raw)).where(Message.id.in_(ids)).order_by(Message.id)
        ).scalars())
        session.commit()  # end the read; the stage starts its own transactions
        try:
            outcomes = stage.process(session, messages)
            if session.in_transaction():
                session.commit()
            self.pipeline.dependency_up(stage_name)
            return outcomes
        except DependencyDown as down:
            if session.in_transaction():
                session.rollback()
            self._wait_for_dependency(session, stage_name, ids, down)
            return None
        except Exception as exc:
            if session.in_transaction():
                session.rollback()
            error = describe_error(exc)
            log.warning("stage %s failed on a batch of %d: %s", stage_name, len(ids), error)
            return {i: Outcome.retry(error) for i in ids}

    def _wait_for_dependency(self, session: Session, stage_name: str, ids: list[int], down: DependencyDown) -> None:
        """The stage's service is down: keep what finished, give the rest back uncounted, let the stage wait."""
        finished = {i: o for i, o in down.outcomes.items() if i in ids}
        if finished:
            self._record(session, stage_name, list(finished), finished)
        rest = [i for i in ids if i not in finished]
        queue.release(session, rest, self.name)
        STAGE_OUTCOMES.labels(stage_name, "waiting").inc(len(rest))
        self.pipeline.dependency_down(stage_name, str(down), self.settings.dependency_wait_seconds)

    def release_current(self) -> int:
        """Give back the batch in hand without counting its claims (the daemon stops before it finished).

        Called from another thread at shutdown; the stage may still be running, but its outcome
        will not be recorded (the lease is gone) and another worker or daemon redoes the batch.
        """
        batch = self.current
        if batch is None:
            return 0
        with self.db.session() as session:
            return queue.release(session, batch.ids, self.name)

    def _record(self, session: Session, stage_name: str, ids: list[int], outcomes: dict[int, Outcome]) -> None:
        next_stage = self.pipeline.next_stage(stage_name)
        with session.begin():
            for message_id in ids:
                outcome = outcomes.get(message_id) or Outcome.retry("stage returned no outcome")
                STAGE_OUTCOMES.labels(stage_name, outcome.kind).inc()
                if outcome.kind == "next":
                    queue.advance(session, message_id, self.name, stage_name, next_stage)
                elif outcome.kind == "finish":
                    queue.advance(session, message_id, self.name, stage_name, "done")
                elif outcome.kind == "quarantine":
                    log.warning("message %d quarantined at %s: %s", message_id, stage_name, outcome.reason)
                    queue.quarantine(session, message_id, self.name, stage_name, outcome.reason or "")
                else:
                    new_stage = queue.fail(
                        session,
                        message_id,
                        self.name,
                        stage_name,
                        outcome.reason or "unknown error",
                        self.settings.max_attempts,
                        self.settings.retry_base_seconds,
                    )
                    if new_stage == "parked":
                        log.error("message %d parked at %s after %d attempts: %s", message_id, stage_name,
                                  self.settings.max_attempts, outcome.reason)
