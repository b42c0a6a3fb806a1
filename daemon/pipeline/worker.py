"""Pipeline workers: claim due messages, run their stage, record the outcome.

Several workers in one daemon, and several daemons on one database, cooperate only through
the claim SQL in ``daemon.db.queue``; there is no other coordinator.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.config import PipelineSettings
from daemon.db import queue
from daemon.db.session import Database
from daemon.db.tables import Message
from daemon.errors import describe_error
from daemon.metrics import STAGE_OUTCOMES, STAGE_SECONDS
from daemon.pipeline.router import Pipeline
from daemon.pipeline.stage import Outcome

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, name: str, db: Database, pipeline: Pipeline, settings: PipelineSettings) -> None:
        self.name = name
        self.db = db
        self.pipeline = pipeline
        self.settings = settings
        self.wakeup = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set; a batch in flight is finished, never abandoned half-way."""
        idle_delay = self.settings.poll_seconds
        failing = False
        while not stop.is_set():
            try:
                worked = await asyncio.to_thread(self.run_once)
                if failing:
                    log.info("worker %s: working again", self.name)
                    failing = False
                idle_delay = self.settings.poll_seconds
            except Exception as exc:  # database down: back off, log once per outage
                worked = False
                if not failing:
                    log.error("worker %s: %s; retrying with backoff", self.name, describe_error(exc))
                    failing = True
                idle_delay = min(idle_delay * 2, 60.0)
            if worked:
                continue
            self.wakeup.clear()
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self.wakeup.wait())]
            await asyncio.wait(waiters, timeout=idle_delay, return_when=asyncio.FIRST_COMPLETED)
            for task in waiters:
                task.cancel()

    def _ready_stages(self) -> list[str]:
        return [name for name, reason in self.pipeline.claimable().items() if reason is None]

    def run_once(self) -> bool:
        """Claim and process one round of work; return whether there was any."""
        stages = self._ready_stages()
        if not stages:
            return False
        limit = max((s.batch_size for s in self.pipeline.stages.values()), default=16)
        with self.db.session() as session:
            claimed = queue.claim(session, stages, self.name, limit, self.settings.lease_seconds)
        if not claimed:
            return False
        by_stage: dict[str, list[int]] = defaultdict(list)
        for item in claimed:
            by_stage[item.stage].append(item.id)
        for stage_name, ids in by_stage.items():
            self._process(stage_name, ids)
        return True

    def _process(self, stage_name: str, ids: list[int]) -> None:
        stage = self.pipeline.stages.get(stage_name)
        started = time.monotonic()
        with self.db.session() as session:
            if stage is None:  # switched off: pass through
                outcomes = {i: Outcome.next() for i in ids}
            else:
                messages = list(
                    session.execute(select(Message).where(Message.id.in_(ids)).order_by(Message.id)).scalars()
                )
                session.commit()  # end the read; the stage starts its own transactions
                try:
                    outcomes = stage.process(session, messages)
                    if session.in_transaction():
                        session.commit()
                except Exception as exc:
                    if session.in_transaction():
                        session.rollback()
                    error = describe_error(exc)
                    log.warning("stage %s failed on a batch of %d: %s", stage_name, len(ids), error)
                    outcomes = {i: Outcome.retry(error) for i in ids}
            STAGE_SECONDS.labels(stage_name).observe(time.monotonic() - started)
            self._record(session, stage_name, ids, outcomes)

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
