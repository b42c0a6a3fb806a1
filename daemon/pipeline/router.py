"""Routing between stages: which stage comes next, and which may be claimed now.

A stage that is switched off is passed through; a stage that cannot run (no active model, a
backend that failed to load) says why, and that is logged once, not by every worker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from daemon.pipeline.stage import KNOWN_STAGES, Stage

log = logging.getLogger(__name__)


class Pipeline:
    """Routing between stages; a stage that is switched off is passed through."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = {stage.name: stage for stage in stages}
        self._waiting: dict[str, str] = {}  # shared by all workers, so a waiting stage is logged once
        self._lock = threading.Lock()
        unknown = set(self.stages) - set(KNOWN_STAGES)
        if unknown:
            raise ValueError(f"stages {sorted(unknown)} are missing from KNOWN_STAGES")

    def next_stage(self, current: str) -> str:
        following = KNOWN_STAGES[KNOWN_STAGES.index(current) + 1 :]
        return next((name for name in following if name in self.stages), "done")

    def claimable(self) -> dict[str, str | None]:
        """Stage name -> why it waits (None = ready); switched-off stages are claimable to pass through."""
        reasons = {
            name: (self.stages[name].waiting_reason() if name in self.stages else None) for name in KNOWN_STAGES
        }
        with self._lock:
            for name, reason in reasons.items():
                if reason is None and name in self._waiting:
                    log.info("stage %s is ready again", name)
                    del self._waiting[name]
                elif reason is not None and self._waiting.get(name) != reason:
                    log.warning("stage %s is waiting: %s", name, reason)
                    self._waiting[name] = reason
        return reasons
