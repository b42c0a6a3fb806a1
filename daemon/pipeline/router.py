"""Routing between stages: which stage comes next, and which may be claimed now.

A stage that is switched off is passed through; a stage that cannot run (no active model, a
backend that failed to load) says why, and that is logged once, not by every worker.

A stage whose outside service is down (``DependencyDown``) waits here too: workers report the
outage, the stage is not claimed for ``pipeline.dependency_wait_seconds``, then one worker tries
it again. The outage is logged once when it starts (a reminder every 10 minutes) and once when it
ends, whatever the number of workers and tries in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from daemon.pipeline.stage import KNOWN_STAGES, Stage

log = logging.getLogger(__name__)

REMIND_EVERY_SECONDS = 600.0


@dataclass
class _Outage:
    reason: str
    since: datetime  # local wall time, for "since HH:MM"
    wait_seconds: float
    retry_at: float  # monotonic: when the stage may be tried again
    logged_at: float  # monotonic
    tries: int = 1

    @property
    def text(self) -> str:
        return f"{self.reason} since {self.since:%H:%M}"


class Pipeline:
    """Routing between stages; a stage that is switched off is passed through."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = {stage.name: stage for stage in stages}
        self._waiting: dict[str, str] = {}  # shared by all workers, so a waiting stage is logged once
        self._outages: dict[str, _Outage] = {}
        self._lock = threading.Lock()
        unknown = set(self.stages) - set(KNOWN_STAGES)
        if unknown:
            raise ValueError(f"stages {sorted(unknown)} are missing from KNOWN_STAGES")

    def next_stage(self, current: str) -> str:
        following = KNOWN_STAGES[KNOWN_STAGES.index(current) + 1 :]
        return next((name for name in following if name in self.stages), "done")

    def claimable(self) -> dict[str, str | None]:
        """Stage name -> why it waits (None = ready); switched-off stages are claimable to pass through.

        When a stage's outage wait is over, the first caller gets it as ready and the wait starts
        again for everyone else, so one worker at a time tries a service that was down.
        """
        reasons = {
            name: (self.stages[name].waiting_reason() if name in self.stages else None) for name in KNOWN_STAGES
        }
        now = time.monotonic()
        with self._lock:
            for name, reason in reasons.items():
                if reason is None and name in self._waiting:
                    log.info("stage %s is ready again", name)
                    del self._waiting[name]
                elif reason is not None and self._waiting.get(name) != reason:
                    log.warning("stage %s is waiting: %s", name, reason)
                    self._waiting[name] = reason
            for name, outage in self._outages.items():
                if reasons.get(name) is not None:
                    continue
                if now < outage.retry_at:
                    reasons[name] = outage.text
                else:  # this caller tries; the others keep waiting until it reports
                    outage.retry_at = now + outage.wait_seconds
        return reasons

    def waiting(self) -> dict[str, str]:
        """Stages that wait now and why, for /healthz; never loads anything (unlike ``claimable``)."""
        with self._lock:
            return {**self._waiting, **{name: o.text for name, o in self._outages.items()}}

    def dependency_down(self, stage: str, reason: str, wait_seconds: float) -> None:
        """A worker found the service of ``stage`` unreachable: wait ``wait_seconds`` before trying again."""
        now = time.monotonic()
        with self._lock:
            outage = self._outages.get(stage)
            if outage is None:
                outage = _Outage(reason, datetime.now(), wait_seconds, now + wait_seconds, now)
                self._outages[stage] = outage
                log.warning("stage %s waits: %s; its messages stay there without an attempt counted, "
                            "trying again every %.0fs", stage, outage.text, wait_seconds)
                return
            outage.reason, outage.wait_seconds, outage.tries = reason, wait_seconds, outage.tries + 1
            outage.retry_at = now + wait_seconds
            if now - outage.logged_at >= REMIND_EVERY_SECONDS:
                outage.logged_at = now
                log.warning("stage %s still waits: %s (%d tries)", stage, outage.text, outage.tries)
            else:
                log.debug("stage %s: still %s (try %d)", stage, outage.reason, outage.tries)

    def dependency_up(self, stage: str) -> None:
        """A batch of ``stage`` ran: a wait it was in is over."""
        if stage not in self._outages:  # the common case, without the lock
            return
        with self._lock:
            outage = self._outages.pop(stage, None)
        if outage is not None:
            log.info("stage %s works again (it waited from %s, %d tries)", stage, f"{outage.since:%H:%M}",
                     outage.tries)
