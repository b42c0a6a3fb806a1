"""Wiring of ``mailsense run``: watchers, SMTP ingress, workers, health, signals, graceful stop.

SIGTERM stops taking new work: watchers leave IDLE and log out, the SMTP listener closes,
workers finish the batch in hand (its outcome is recorded) and exit. Whatever is still running
after ``daemon.shutdown_timeout`` is abandoned; its leases expire and another worker redoes it,
which the stages are built to tolerate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from contextlib import suppress

from sqlalchemy import text

from daemon.config import Settings
from daemon.db import queue
from daemon.db.session import Database
from daemon.health import sd_notify, serve_health, watchdog_interval
from daemon.ingest.imap import FolderWatcher
from daemon.ingest.smtp import make_controller
from daemon.pipeline.router import Pipeline
from daemon.pipeline.worker import Worker
from daemon.stages import build_stages

log = logging.getLogger(__name__)


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Service:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.instance = instance_name()
        self.stop = asyncio.Event()
        self.thread_stop = threading.Event()
        self.workers: list[Worker] = []

    def request_stop(self, signame: str = "") -> None:
        if not self.stop.is_set():
            log.info("stopping (%s): finishing work in flight", signame or "requested")
            sd_notify("STOPPING=1")
        self.stop.set()
        self.thread_stop.set()

    def _wake_workers(self) -> None:
        for worker in self.workers:
            worker.wakeup.set()

    def health(self) -> dict[str, object]:
        try:
            with self.db.session() as session:
                session.execute(text("SELECT 1"))
            return {"ok": True, "instance": self.instance}
        except Exception as exc:
            return {"ok": False, "instance": self.instance, "error": type(exc).__name__}

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

        def wake_from_thread() -> None:
            loop.call_soon_threadsafe(self._wake_workers)

        with self.db.session() as session:
            released = queue.release_dead_local_leases(session, socket.gethostname(), pid_alive)
        if released:
            log.info("released %d message lease(s) left by a daemon on this host that is gone", released)
        pipeline = Pipeline(build_stages(self.settings, self.db))
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

        worker_tasks = [asyncio.create_task(w.run(self.stop), name=w.name) for w in self.workers]
        watchdog = asyncio.create_task(self._watchdog())
        log.info("running: %d folder watcher(s), %d worker(s), stages %s", len(watchers), len(self.workers),
                 ", ".join(pipeline.stages))
        sd_notify("READY=1")

        await self.stop.wait()

        if controller is not None:
            await asyncio.to_thread(controller.stop)
        if health_server is not None:
            health_server.close()
        timeout = self.settings.daemon.shutdown_timeout
        _, pending = await asyncio.wait(worker_tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("%d worker(s) still busy after %.0fs; their leases will expire and be retried",
                        len(pending), timeout)
        for thread in threads:
            await asyncio.to_thread(thread.join, max(1.0, timeout / max(len(threads), 1)))
        watchdog.cancel()
        with suppress(asyncio.CancelledError):
            await watchdog
        log.info("stopped")
        return 0

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        # The watchdog proves the event loop is alive; a database outage is handled by retries, not
        # by a restart loop, so it does not stop the pings.
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)
