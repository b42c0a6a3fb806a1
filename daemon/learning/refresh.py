"""Making new labels count at once: the hand-off from labelling to the cheap retrain job.

``mailsense learn`` calls ``labels_changed`` after it wrote labels, so the token statistics and
thresholds are refitted now (``daemon.learning.retrain.refresh_token_statistics``, forced: a
person who just taught a few messages wants them learned, below the scheduler's minimums too; the
promotion gate still decides) instead of at the next scheduled run or nightly fine-tune. In the
daemon the scheduler's token job picks up corrections and the bootstrap's labels by itself.
"""

from __future__ import annotations

import logging

from daemon.config import Settings
from daemon.db.session import Database
from daemon.learning.retrain import refresh_token_statistics

log = logging.getLogger(__name__)


def labels_changed(settings: Settings, db: Database, why: str) -> str:
    """Refit the token statistics and thresholds on the labels now stored; say what happened."""
    result = refresh_token_statistics(settings, db, force=True)
    message = f"token statistics: {result.outcome} ({result.detail})"
    log.info("%s: %s", why, message)
    return message
