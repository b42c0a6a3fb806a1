"""The ordered list of stages: where a message goes next is decided here and only here.

Adding a stage: write a class that follows ``daemon.pipeline.stage.Stage`` and add it to
``build_stages`` at its place in the flow; add its name to ``KNOWN_STAGES`` so messages that
wait at it while it is switched off are moved on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from daemon.config import Settings
from daemon.db.session import Database
from daemon.pipeline.parse import ParseStage
from daemon.pipeline.stage import Stage

log = logging.getLogger(__name__)

# Every stage name that may appear in messages.stage, in flow order.
KNOWN_STAGES: tuple[str, ...] = ("parse", "classify", "file", "draft")
FIRST_STAGE = KNOWN_STAGES[0]


def build_stages(settings: Settings, db: Database) -> list[Stage]:
    """The stages active under ``settings``, in flow order."""
    stages: list[Stage] = [ParseStage()]
    if settings.spam.enabled:
        from daemon.spam.actions import FileStage
        from daemon.spam.classify import ClassifyStage

        stages += [ClassifyStage(settings.spam, db), FileStage(settings)]
    if settings.drafts.enabled:
        from daemon.drafts.stage import DraftStage

        stages.append(DraftStage(settings, db))
    return stages


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
