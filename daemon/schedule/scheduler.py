"""Cluster-wide jobs on a timetable, inside ``mailsense run`` (APScheduler ``BackgroundScheduler``).

The timetable comes from ``[learning]``:

* every ``token_refresh_seconds``: a token-statistics refresh when new labels exist, or a full
  fine-tune instead once ``fine_tune_after_labels`` labels arrived since the last one;
* on ``fine_tune_cron`` (03:00 by default): a full fine-tune when new labels exist;
* every ``housekeeping_seconds``: housekeeping, and a KB sync of ``kb_sync_folders``.

Every daemon of a cluster runs the same timetable; the jobs take Postgres advisory locks
(``daemon/learning/jobs.py``), so each runs once and the others record a skip. One job runs at
a time per daemon (a single executor thread): the cores are shared with classification.

Stopping never waits for a fine-tune: each job runs in a daemon thread that the scheduler thread
watches; on stop the job is left behind, the process exits, Postgres drops its lock and its
open transaction, and the next run of the job records the abandoned one as interrupted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from daemon.config import ConfigError, Settings
from daemon.db.session import Database
from daemon.errors import describe_error
from daemon.learning import dataset, housekeeping, retrain
from daemon.learning.dataset import Corpora
from daemon.learning.jobs import JobResult, last_trained_label_id

log = logging.getLogger(__name__)


class JobScheduler:
    def __init__(self, settings: Settings, db: Database, instance: str) -> None:
        self.settings = settings
        self.db = db
        self.instance = instance
        self.corpora = Corpora(settings.learning)
        self.stopping = threading.Event()
        self._scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )

    def start(self) -> None:
        learning = self.settings.learning
        self._scheduler.add_job(self._guarded, IntervalTrigger(seconds=learning.token_refresh_seconds),
                                args=("retrain", self.retrain_tick), id="retrain", name="token refresh")
        if learning.fine_tune_cron:
            try:
                cron = CronTrigger.from_crontab(learning.fine_tune_cron)
            except ValueError as exc:
                raise ConfigError(f"learning.fine_tune_cron: {exc}; for example '0 3 * * *' = 03:00 every day"
                                  ) from None
            self._scheduler.add_job(self._guarded, cron,
                                    args=("fine_tune", self.fine_tune), id="fine_tune", name="fine-tune")
        self._scheduler.add_job(self._guarded, IntervalTrigger(seconds=learning.housekeeping_seconds),
                                args=("housekeeping", self.housekeeping), id="housekeeping", name="housekeeping")
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # each tick at INFO would drown the daemon's log
        self._scheduler.start()
        log.info("scheduler: token refresh every %gs, fine-tune %s, housekeeping every %gs",
                 learning.token_refresh_seconds, f"at '{learning.fine_tune_cron}'" if learning.fine_tune_cron
                 else "not scheduled", learning.housekeeping_seconds)

    def shutdown(self) -> None:
        self.stopping.set()
        self._scheduler.shutdown(wait=False)

    # -- the jobs --------------------------------------------------------------------------------

    def retrain_tick(self) -> JobResult:
        """A fine-tune once enough labels arrived since the last one, else a token refresh."""
        after = self.settings.learning.fine_tune_after_labels
        if after:
            with self.db.session() as session:
                new = dataset.count_labels_after(session, last_trained_label_id(self.db, retrain.FINE_TUNE))
            if new >= after:
                log.info("%d new labels since the last fine-tune (fine_tune_after_labels = %d): fine-tuning now",
                         new, after)
                return self.fine_tune()
        return retrain.refresh_token_statistics(self.settings, self.db, self.corpora, self.instance)

    def fine_tune(self) -> JobResult:
        return retrain.fine_tune(self.settings, self.db, self.corpora, self.instance)

    def housekeeping(self) -> JobResult:
        result = housekeeping.housekeeping(self.settings, self.db, self.instance)
        if self.settings.learning.kb_sync_folders and not self.stopping.is_set():
            housekeeping.kb_sync(self.settings, self.db, self.instance)
        return result

    def _guarded(self, name: str, job: Callable[[], JobResult]) -> None:
        """Run ``job`` in a daemon thread and wait for it, or give up on it when the daemon stops."""
        if self.stopping.is_set():
            return
        done = threading.Event()

        def body() -> None:
            try:
                job()
            except Exception as exc:  # run_job records the job's own errors; this is the scheduler's
                log.error("scheduled job %s: %s", name, describe_error(exc))
            finally:
                done.set()

        threading.Thread(target=body, name=f"job:{name}", daemon=True).start()
        while not done.wait(1.0):
            if self.stopping.is_set():
                log.warning("stopping while job %s runs: it is abandoned and will be recorded as interrupted", name)
                return
