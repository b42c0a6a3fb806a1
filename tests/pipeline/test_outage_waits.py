"""An outage of a service a stage needs makes the stage wait; it never uses up the messages' attempts.

Five failures at 5·2ⁿ s park a message after about 75 s, so before this an IMAP server or LLM
endpoint that was down for two minutes parked every message at ``file`` or ``draft``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import text

from daemon.config import PipelineSettings
from daemon.db.session import Database
from daemon.ingest.store import ensure_account, store_message
from daemon.kb.embeddings import Embedder
from daemon.kb.store import KnowledgeBase
from daemon.pipeline.router import Pipeline
from daemon.pipeline.stage import DependencyDown, Outcome
from daemon.pipeline.worker import Worker
from tests.drafts.conftest import write_kb
from tests.drafts.test_stage import QUESTION, email
from tests.helpers import free_port, make_message, wait_for


def add_messages(db: Database, n: int) -> None:
    with db.session() as s, s.begin():
        account = ensure_account(s, "acct")
        for i in range(n):
            store_message(s, account_id=account.id, raw=make_message(f"m{i}"), source="import", first_stage="parse")


def rows(db: Database) -> list[dict[str, object]]:
    with db.session() as s:
        return [dict(r._mapping) for r in s.execute(text(
            "SELECT id, stage, attempts, claims, lease_owner FROM messages ORDER BY id"))]


class PassOn:
    name = "parse"
    batch_size = 32

    def waiting_reason(self) -> str | None:
        return None

    def process(self, session, messages):  # type: ignore[no-untyped-def]
        return {m.id: Outcome.next() for m in messages}


class Outage:
    """A stage whose outside service is down until ``down`` is cleared."""

    name = "classify"
    batch_size = 4

    def __init__(self) -> None:
        self.down = True
        self.calls = 0

    def waiting_reason(self) -> str | None:
        return None

    def process(self, session, messages):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.down:
            raise DependencyDown("IMAP server unreachable")
        return {m.id: Outcome.next() for m in messages}


def test_a_stage_whose_service_is_down_waits_without_using_attempts(db: Database, caplog):
    add_messages(db, 6)
    outage = Outage()
    pipeline = Pipeline([PassOn(), outage])
    settings = PipelineSettings(max_attempts=2, retry_base_seconds=0.01, dependency_wait_seconds=0.2)
    worker = Worker("w", db, pipeline, settings)
    caplog.set_level(logging.INFO)
    reasons: set[str] = set()
    deadline = time.monotonic() + 3  # about 15 wait periods, 300 retry delays
    while time.monotonic() < deadline:
        worker.run_once()
        reasons.add(pipeline.claimable()["classify"] or "")
        time.sleep(0.02)
    assert 3 <= outage.calls < 40  # tried again after each wait, not on every round
    assert any(re.fullmatch(r"IMAP server unreachable since \d\d:\d\d", r) for r in reasons), reasons
    for row in rows(db):  # parse went on; classify kept every message, no attempt or claim used
        assert (row["stage"], row["attempts"], row["claims"], row["lease_owner"]) == ("classify", 0, 0, None)
    waits = [r for r in caplog.records if "IMAP server unreachable" in r.getMessage()]
    assert len(waits) == 1 and waits[0].levelno == logging.WARNING

    outage.down = False
    time.sleep(0.25)
    wait_for(lambda: not worker.run_once() and {r["stage"] for r in rows(db)} == {"done"}, 10, "all done")
    assert sum("unreachable" in r.getMessage() for r in caplog.records) == 1
    assert any("classify" in r.getMessage() and "again" in r.getMessage() for r in caplog.records)
    assert pipeline.claimable()["classify"] is None


class FakeEndpoint:
    """A tiny OpenAI-compatible server answering ``POST /v1/chat/completions`` with a cited answer."""

    def __init__(self, port: int) -> None:
        self.requests = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests += 1
                answer = "Unplug the router, wait thirty seconds and plug it in again [1]."
                data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                        "content": answer}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def endpoint(port: int) -> Iterator[FakeEndpoint]:
    server = FakeEndpoint(port)
    try:
        yield server
    finally:
        server.close()


def test_drafts_wait_for_an_llm_endpoint_that_is_down_then_get_written(
    daemon_factory, db_url: str, dovecot, mailbox_user: str, embedder: Embedder, tmp_path: Path
):
    db = Database.from_url(db_url, pool_size=2)
    KnowledgeBase(db, embedder).add([write_kb(tmp_path / "kb")])
    for i in range(3):
        dovecot.append(mailbox_user, "INBOX", email(f"Wifi problem {i}", QUESTION))
    port = free_port()  # nothing listens here yet: connection refused
    daemon = daemon_factory(
        drafts__enabled=True, drafts__backend="openai",
        pipeline__retry_base_seconds=0.2, pipeline__max_attempts=5, pipeline__dependency_wait_seconds=1,
        **{"drafts.openai__base_url": f"http://127.0.0.1:{port}/v1", "drafts.openai__model": "fake",
           "drafts.openai__max_retries": 0, "drafts.openai__timeout_seconds": 5},
    ).start()

    def state() -> list[tuple[str, int, int]]:
        with db.session() as s:
            return [tuple(r) for r in s.execute(text("SELECT stage, attempts, claims FROM messages ORDER BY id"))]

    wait_for(lambda: len(state()) == 3 and all(stage != "parse" for stage, _, _ in state()), 90,
             "three messages past parse", daemon.log)
    wait_for(lambda: "127.0.0.1" in daemon.log() and "unreachable" in daemon.log(), 60, "the endpoint tried",
             daemon.log)
    time.sleep(8)  # more than five retry cycles: 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s
    assert state() == [("draft", 0, 0)] * 3, daemon.log()[-3000:]

    with endpoint(port) as server:
        def drafted() -> bool:
            with db.session() as s:
                n = s.execute(text("SELECT count(*) FROM drafts")).scalar_one()
            return n == 3 and {stage for stage, _, _ in state()} == {"done"}

        wait_for(drafted, 60, "three drafts once the endpoint is up", daemon.log)
        assert server.requests >= 3
    log = daemon.log()
    assert sum("stage draft waits" in line for line in log.splitlines()) == 1, log
    assert "parked" not in log
    assert daemon.terminate() == 0
    db.dispose()
