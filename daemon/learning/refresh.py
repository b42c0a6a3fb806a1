"""Making new labels count at once: the hand-off from labelling to the cheap retrain job.

``mailsense learn`` and the bootstrap call ``labels_changed`` after they wrote labels, so the token
statistics and thresholds are refitted without waiting for the next scheduled run or a nightly
fine-tune (the ``sa-learn`` habit: a message learned is a message the filter knows now).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import cast

from daemon.config import Settings
from daemon.db.session import Database

log = logging.getLogger(__name__)

RETRAIN_MODULE = "daemon.learning.retrain"
RETRAIN_FUNCTION = "refresh_token_statistics"


def labels_changed(settings: Settings, db: Database, why: str) -> str:
    """Refit the token statistics and thresholds on the labels now stored; say what happened.

    THE ONE CALL SITE of the retrain job ``daemon.learning.retrain.refresh_token_statistics(settings, db)``
    (the scheduler's cheap "token statistics and thresholds" job). Until that module exists the
    labels wait for the next training (`mailsense train spam --data db`).
    """
    try:
        module = importlib.import_module(RETRAIN_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != RETRAIN_MODULE:
            raise
        message = "labels stored; they take effect at the next training (`mailsense train spam --data db`)"
        log.info("%s: %s", why, message)
        return message
    refresh = cast(Callable[[Settings, Database], object], getattr(module, RETRAIN_FUNCTION))
    outcome = refresh(settings, db)
    message = f"token statistics refreshed: {outcome}"
    log.info("%s: %s", why, message)
    return message
