"""The stages of the mail's way, built from the settings: where a message goes next is decided here.

Adding a stage: a package named after it with a class that follows ``daemon.pipeline.stage.Stage``,
its name in ``KNOWN_STAGES`` (``daemon.pipeline.stage``, so messages that wait at it while it is
switched off are moved on), and a line in ``build_stages`` at its place in the flow.
"""

from __future__ import annotations

from daemon.config import Settings
from daemon.db.session import Database
from daemon.parse.stage import ParseStage
from daemon.pipeline.stage import Stage


def build_stages(settings: Settings, db: Database) -> list[Stage]:
    """The stages active under ``settings``, in flow order."""
    stages: list[Stage] = [ParseStage(budget_seconds=settings.pipeline.parse_budget_seconds)]
    if settings.spam.enabled:
        from daemon.classify.stage import ClassifyStage
        from daemon.filing.stage import FileStage
        from daemon.spam.artifacts import models_dir

        cache = models_dir(settings)  # versions trained elsewhere, from Postgres
        stages += [ClassifyStage(settings.spam, db, cache), FileStage(settings)]
    if settings.drafts.enabled:
        from daemon.drafts.stage import DraftStage

        stages.append(DraftStage(settings, db))
    return stages
