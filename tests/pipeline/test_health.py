"""Health that tells the truth: /healthz reports watchers, workers and backlog; the watchdog follows progress.

Before, /healthz ran ``SELECT 1``, the watchdog only proved that the event loop ran, and a folder
stayed "connected" in the database after the daemon holding it was killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from sqlalchemy import text

from daemon.config import PipelineSettings, Settings
from daemon.db.session import Database
from daemon.health import folder_states, serve_health
from daemon.ingest.store import ensure_account, store_message
from daemon.pipeline.router import Pipeline
from daemon.pipeline.stage import Outcome
from daemon.pipeline.worker import Worker
from daemon.service import Service
from tests.helpers import free_port, make_message, wait_for


def get(port: int, path: str = "/healthz") -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_healthz_reports_watchers_workers_and_backlog_and_connected_ends_with_a_kill(
    daemon_factory, dovecot, mailbox_user, db
):
    port = free_port()
    daemon = daemon_factory(daemon__health_port=port, pipeline__heartbeat_seconds=0.5).start()
    dovecot.append(mailbox_user, "INBOX", make_message("health check"))

    def processed() -> bool:
        with db.session() as s:
            return s.execute(text("SELECT array_agg(stage) FROM messages")).scalar() == ["done"]

    wait_for(processed, 60, "the message processed", daemon.log)
    wait_for(lambda: get(port)[1].get("watchers", [{}])[0].get("connected"), 30, "watcher connected", daemon.log)
    status, health = get(port)
    assert status == 200 and health["status"] == "ok", health
    [watcher] = health["watchers"]
    assert (watcher["account"], watcher["folder"], watcher["connected"]) == ("test", "INBOX", True)
    assert watcher["connected_by"] == health["instance"] and watcher["last_error"] is None
    assert watcher["heartbeat_age_seconds"] is not None
    assert [w["name"] for w in health["workers"]] == [f"{health['instance']}/w0", f"{health['instance']}/w1"]
    for worker in health["workers"]:
        assert worker["state"] in ("idle", "working") and worker["last_progress_seconds_ago"] is not None
    assert "oldest_due_seconds" in health["backlog"] and health["backlog"]["due"] == 0
    assert health["stages"] == {"parse": None}
    assert health["database"] == "ok"

    daemon.kill()  # SIGKILL: the watcher never writes connected = false
    with db.session() as s:
        assert s.execute(text("SELECT connected FROM folders")).scalar_one() is True  # the stale flag
    wait_for(lambda: not folder_states(db, stale_after_seconds=1.5)[0]["connected"], 30, "connected from heartbeat")
    [state] = folder_states(db, stale_after_seconds=1.5)
    assert state["connected_by"] == health["instance"] and state["heartbeat_age_seconds"] > 0


class Blocking:
    name = "parse"
    batch_size = 1

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def waiting_reason(self) -> str | None:
        return None

    def process(self, session, messages):  # type: ignore[no-untyped-def]
        self.started.set()
        self.release.wait(60)
        return {m.id: Outcome.next() for m in messages}


def stuck_worker(db: Database) -> tuple[Worker, Blocking, threading.Thread]:
    """A worker inside a batch, with its deadline (lease_seconds per message) moved into the past."""
    with db.session() as s, s.begin():
        account = ensure_account(s, "acct")
        store_message(s, account_id=account.id, raw=make_message("stuck"), source="import", first_stage="parse")
    stage = Blocking()
    worker = Worker("w0", db, Pipeline([stage]), PipelineSettings(lease_seconds=10))
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    assert stage.started.wait(10)
    assert worker.current is not None and not worker.stuck()
    assert worker.stuck(now=worker.current.deadline + 1)
    worker.current = dataclasses.replace(worker.current, deadline=time.monotonic() - 1)
    return worker, stage, thread


def test_a_stuck_worker_makes_healthz_answer_503(db):
    service = Service(Settings(), db)
    worker, stage, thread = stuck_worker(db)
    service.workers = [worker]
    port = free_port()

    async def fetch() -> tuple[int, dict]:
        server = await serve_health("127.0.0.1", port, service.health)
        try:
            return await asyncio.to_thread(get, port)
        finally:
            server.close()

    try:
        status, health = asyncio.run(fetch())
    finally:
        stage.release.set()
        thread.join()
    assert status == 503 and health["status"] == "unhealthy"
    [entry] = health["workers"]
    assert entry["state"] == "stuck" and entry["stage"] == "parse" and entry["batch"] == 1
    assert any("w0" in problem and "stuck" in problem for problem in health["problems"])
    assert worker.stuck() is False  # the batch finished


def test_the_watchdog_follows_worker_progress(db, monkeypatch):
    sock_path = Path(tempfile.mkdtemp()) / "notify"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(sock_path))
    receiver.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    service = Service(Settings(), db)

    def pings_within(seconds: float) -> int:
        async def run() -> None:
            task = asyncio.create_task(service._watchdog())
            await asyncio.sleep(seconds)
            task.cancel()

        asyncio.run(run())
        count = 0
        while True:
            try:
                count += receiver.recv(100) == b"WATCHDOG=1"
            except BlockingIOError:
                return count

    idle = Worker("idle", db, Pipeline([Blocking()]), PipelineSettings())
    service.workers = [idle]
    assert idle.run_once() is False  # nothing to claim: idle counts as healthy
    assert pings_within(0.5) >= 3
    worker, stage, thread = stuck_worker(db)
    service.workers = [idle, worker]
    try:
        assert pings_within(0.5) == 0
    finally:
        stage.release.set()
        thread.join()
    assert pings_within(0.5) >= 3
    receiver.close()
    os.unlink(sock_path)
