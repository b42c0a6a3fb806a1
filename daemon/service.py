"""Wiring of ``mailsense run``: watchers, SMTP ingress, workers, health, signals, graceful stop.

SIGTERM stops taking new work: the job scheduler starts no more jobs (daemon/schedule/), watchers
leave IDLE and log out, the SMTP listener closes, workers finish the batch in hand (its outcome
is recorded) and exit. A batch still running
after ``daemon.shutdown_timeout`` is abandoned: its leases are released without the claims
counting, so another worker or daemon redoes it at once, which the stages are built to tolerate.

Each start is an instance with a random id (``instances`` table), not a host name and pid: two
containers may share both. The instance heartbeats every ``pipeline.heartbeat_seconds`` from a
thread of its own (busy workers cannot delay it); leases are owned by ``<instance id>/<worker>``,
and the leases of instances that stopped or missed three beats are released at start and with
every beat. Folder watchers record the instance as ``connected_by``, so "connected" is believed
only while that instance beats.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
import uuid
from contextlib import suppress

from daemon.config import Settings
from daemon.db import instances
from daemon.db.embedded import to_libpq_url
from daemon.db.session import Database
from daemon.delivery import stats as delivery_stats
from daemon.delivery.deliver import Deliverer
from daemon.errors import describe_error
from daemon.health import backlog, folder_states, sd_notify, serve_health, watchdog_interval
from daemon.ingest.imap import FolderWatcher
from daemon.ingest.smtp import make_controller
from daemon.learning.corrections import trackers
from daemon.pipeline.router import Pipeline
from daemon.pipeline.worker import Worker
from daemon.review import stats as review_stats
from daemon.stages import build_stages

log = logging.getLogger(__name__)

MISSED_BEATS = 3  # an instance whose heartbeat is older than this many intervals is taken for dead


class Service:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.instance = str(uuid.uuid4())
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.stop = asyncio.Event()
        self.thread_stop = threading.Event()
        self.beats_stop = threading.Event()  # set last: the heartbeat goes on while work in flight drains
        self.workers: list[Worker] = []
        self.pipeline: Pipeline | None = None

    @property
    def stale_after_seconds(self) -> float:
        return MISSED_BEATS * self.settings.pipeline.heartbeat_seconds

    def request_stop(self, signame: str = "") -> None:
        if not self.stop.is_set():
            log.info("stopping (%s): finishing work in flight", signame or "requested")
            sd_notify("STOPPING=1")
        self.stop.set()
        self.thread_stop.set()

    def _wake_workers(self) -> None:
        for worker in self.workers:
            worker.wakeup.set()

    # -- health ----------------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        """/healthz: 503 ("unhealthy") when the database is unreachable or a worker is stuck in a batch;
        "degraded" (still 200) when a watched folder has no live connection or a stage waits.

        Watchers are read from the folder rows and the heartbeat of the instance that holds them;
        stage reasons come from what the workers last saw (reading them here could load a model).
        """
        now = time.monotonic()
        lease = self.settings.pipeline.lease_seconds
        workers = [w.progress(now) for w in self.workers]
        problems = [f"worker {w['name']} stuck in stage {w['stage']} for {w['busy_seconds']}s "
                    f"({w['batch']} message(s), {lease}s allowed per message)"
                    for w in workers if w["state"] == "stuck"]
        waiting = self.pipeline.waiting() if self.pipeline else {}
        stages = {name: waiting.get(name) for name in (self.pipeline.stages if self.pipeline else {})}
        watched = [(a.name, f) for a in self.settings.accounts for f in a.folders]
        database, watchers, due = "ok", [], {}
        try:
            known = {(w["account"], w["folder"]): w for w in folder_states(self.db, self.stale_after_seconds)}
            watchers = [known.get(key) or {"account": key[0], "folder": key[1], "connected": False,
                                            "connected_by": None, "last_error": "not connected yet"}
                        for key in watched]
            due = backlog(self.db)
        except Exception as exc:
            database = describe_error(exc)
            problems.append(f"database unreachable: {database}")
        for w in watchers:
            if not w["connected"]:
                problems.append(f"account {w['account']} folder {w['folder']}: not connected"
                                + (f" ({w['last_error']})" if w.get("last_error") else ""))
        problems += [f"stage {name} waits: {reason}" for name, reason in stages.items() if reason]
        unhealthy = database != "ok" or any(w["state"] == "stuck" for w in workers)
        return {
            "ok": not unhealthy,
            "status": "unhealthy" if unhealthy else "degraded" if problems else "ok",
            "instance": self.instance,
            "host": self.host,
            "pid": self.pid,
            "database": database,
            "watchers": watchers,
            "workers": workers,
            "stages": stages,
            "backlog": due,
            "problems": problems,
        }

    async def _watchdog(self) -> None:
        """Ping systemd's watchdog while the workers make progress.

        The pings prove more than a running event loop: a worker stuck in a batch past its deadline
        (``lease_seconds`` per message) stops them, and systemd restarts the daemon. An idle worker
        with nothing to claim is healthy; a database outage is handled by retries, not by a restart
        loop, so it does not stop the pings.
        """
        interval = watchdog_interval()
        if interval is None:
            return
        stuck_before = False
        while True:
            stuck = [w for w in self.workers if w.stuck()]
            if not stuck:
                sd_notify("WATCHDOG=1")
                if stuck_before:
                    log.info("workers make progress again: watchdog pings resume")
            elif not stuck_before:
                batch = stuck[0].current
                log.error("worker %s is stuck in stage %s: no more watchdog pings, systemd will restart the daemon",
                          stuck[0].name, batch.stage if batch else "?")
            stuck_before = bool(stuck)
            await asyncio.sleep(interval)

    def _heartbeat(self) -> None:
        """Keep this instance alive in the database and free the leases of instances that are not."""
        failing = False
        while not self.beats_stop.wait(self.settings.pipeline.heartbeat_seconds):
            try:
                with self.db.session() as session:
                    instances.heartbeat(session, self.instance, self.host, self.pid)
                    released = instances.release_stale_leases(session, self.stale_after_seconds)
                backlog(self.db)  # keeps the backlog gauges of /metrics current
                with self.db.session() as session:  # the drafts gauges of /metrics, in one session
                    delivery_stats.refresh_metrics(session)
                    review_stats.update_metrics(session)
                if released:
                    log.info("released %d message lease(s) held by a daemon that stopped beating", released)
                if failing:
                    log.info("heartbeat recorded again")
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("cannot record the heartbeat: %s", describe_error(exc))
                failing = True

    # -- run -------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        # Before anything starts: a missing password or a port in use stops the start with the key named.
        review_page = None
        if self.settings.web.enabled:
            from daemon.web.server import ReviewServer  # uvicorn and the templates only when wanted

            review_page = ReviewServer(self.settings, self.db)

        def wake_from_thread() -> None:
            loop.call_soon_threadsafe(self._wake_workers)

        with self.db.session() as session:
            instances.register(session, self.instance, self.host, self.pid)
            released = instances.release_stale_leases(session, self.stale_after_seconds)
        log.info("instance %s (host %s, pid %d)", self.instance, self.host, self.pid)
        if released:
            log.info("released %d message lease(s) left by a daemon that is gone", released)
        heartbeat = threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True)
        heartbeat.start()
        self.pipeline = pipeline = Pipeline(build_stages(self.settings, self.db))
        self.workers = [
            Worker(f"{self.instance}/w{i}", self.db, pipeline, self.settings.pipeline)
            for i in range(self.settings.daemon.workers)
        ]
        watchers = [
            FolderWatcher(account, folder, self.db, self.thread_stop, wake_from_thread, self.instance)
            for account in self.settings.accounts
            for folder in account.folders
        ]
        threads = [
            threading.Thread(target=w.run, name=f"imap:{w.account.name}:{w.folder_name}", daemon=True)
            for w in watchers
        ]
        if watchers:  # accounts configured: approved drafts become replies in their mailboxes
            deliverer = Deliverer(self.settings, to_libpq_url(self.db.url), self.thread_stop)
            threads.append(threading.Thread(target=deliverer.run, name="delivery", daemon=True))
        # Corrections (moves in and out of Junk, keywords, replies) and the day-one bootstrap, per account.
        threads += [threading.Thread(target=t.run, name=f"learning:{t.account.name}", daemon=True)
                    for t in trackers(self.settings, self.db, self.thread_stop)]
        for thread in threads:
            thread.start()

        controller = None
        if self.settings.smtp_ingress.enabled:
            controller = make_controller(self.settings.smtp_ingress, self.db, wake_from_thread)
            await asyncio.to_thread(controller.start)
            log.info("SMTP%s ingress listening on %s:%d", " (LMTP)" if self.settings.smtp_ingress.lmtp else "",
                     self.settings.smtp_ingress.host, self.settings.smtp_ingress.port)

        health_server = None
        if self.settings.daemon.health_port:
            health_server = await serve_health("127.0.0.1", self.settings.daemon.health_port, self.health)

        if review_page is not None:
            await review_page.start()
        scheduler = None
        if self.settings.learning.schedule:
            from daemon.schedule.scheduler import JobScheduler

            scheduler = JobScheduler(self.settings, self.db, self.instance)
            scheduler.start()

        worker_tasks = [asyncio.create_task(w.run(self.stop), name=w.name) for w in self.workers]
        watchdog = asyncio.create_task(self._watchdog())
        log.info("running: %d folder watcher(s), %d worker(s), stages %s", len(watchers), len(self.workers),
                 ", ".join(pipeline.stages))
        sd_notify("READY=1")

        await self.stop.wait()

        if scheduler is not None:  # no new jobs; a job in progress is abandoned (daemon/schedule/scheduler.py)
            scheduler.shutdown()
        if controller is not None:
            await asyncio.to_thread(controller.stop)
        if health_server is not None:
            health_server.close()
        if review_page is not None:
            await review_page.stop()
        timeout = self.settings.daemon.shutdown_timeout
        _, pending = await asyncio.wait(worker_tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            abandoned = sum(self._release_quietly(w) for w in self.workers)
            log.warning("%d worker(s) still busy after %.0fs; %d message lease(s) released for another worker",
                        len(pending), timeout, abandoned)
        for thread in threads:
            await asyncio.to_thread(thread.join, max(1.0, timeout / max(len(threads), 1)))
        for stage in pipeline.stages.values():  # log out of what the stages hold open (IMAP connections)
            close = getattr(stage, "close", None)
            if close is not None:
                try:
                    await asyncio.to_thread(close)
                except Exception as exc:
                    log.warning("stage %s: could not close cleanly: %s", stage.name, describe_error(exc))
        watchdog.cancel()
        with suppress(asyncio.CancelledError):
            await watchdog
        self.beats_stop.set()
        heartbeat.join(10)
        try:
            with self.db.session() as session:
                instances.stop(session, self.instance)
        except Exception as exc:  # the leases then run out, and the heartbeat goes stale
            log.warning("could not record the stop: %s", describe_error(exc))
        log.info("stopped")
        return 0

    @staticmethod
    def _release_quietly(worker: Worker) -> int:
        try:
            return worker.release_current()
        except Exception as exc:
            log.warning("worker %s: could not release its leases: %s", worker.name, describe_error(exc))
            return 0
