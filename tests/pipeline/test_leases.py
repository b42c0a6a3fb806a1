"""Leases on a real Postgres: renewed while a batch runs, claims count as attempts, one claim per stage.

A batch may take longer than ``lease_seconds`` (the local draft backend needs about 30 s a draft);
its leases must not run out under it. A message that kills its worker never gets an outcome
recorded, so only counting claims can park it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time

from sqlalchemy import text

from daemon.config import PipelineSettings
from daemon.db import queue
from daemon.db.session import Database
from daemon.ingest.store import ensure_account, store_message
from daemon.pipeline.router import Pipeline
from daemon.pipeline.stage import Outcome
from daemon.pipeline.worker import Worker
from tests.helpers import REPO, make_message


def add_messages(db: Database, n: int, stage: str = "parse") -> list[int]:
    ids = []
    with db.session() as s, s.begin():
        account = ensure_account(s, "acct")
        for i in range(n):
            _, message_id = store_message(s, account_id=account.id, raw=make_message(f"m{i}"), source="import",
                                          first_stage=stage)
            ids.append(message_id)
    return ids


def rows(db: Database) -> list[dict[str, object]]:
    with db.session() as s:
        return [dict(r._mapping) for r in s.execute(text(
            "SELECT id, stage, parked_stage, attempts, claims, lease_owner, last_error FROM messages ORDER BY id"))]


class Recording:
    """A stage that records batch sizes and passes every message on (optionally after a pause)."""

    def __init__(self, name: str, batch_size: int, pause: float = 0.0) -> None:
        self.name = name
        self.batch_size = batch_size
        self.pause = pause
        self.batches: list[int] = []
        self.started = threading.Event()

    def waiting_reason(self) -> str | None:
        return None

    def process(self, session, messages):  # type: ignore[no-untyped-def]
        self.batches.append(len(messages))
        self.started.set()
        time.sleep(self.pause)
        return {m.id: Outcome.next() for m in messages}


def test_a_batch_longer_than_its_lease_is_not_claimed_by_another_worker(db):
    [mid] = add_messages(db, 1)
    stage = Recording("parse", 1, pause=14.0)  # longer than lease_seconds
    worker = Worker("slow", db, Pipeline([stage]), PipelineSettings(lease_seconds=10, poll_seconds=0.1))
    thread = threading.Thread(target=worker.run_once)
    thread.start()
    assert stage.started.wait(10)
    stolen = []
    with db.session() as s:
        while thread.is_alive():
            stolen += queue.claim(s, ["parse"], "intruder", 10, 60)
            time.sleep(0.25)
    thread.join()
    assert stolen == []  # the lease was renewed while the batch ran
    [row] = rows(db)
    assert row["id"] == mid and row["stage"] == "done" and row["lease_owner"] is None and row["claims"] == 0


def test_each_claim_is_sized_by_its_own_stage(db):
    add_messages(db, 10)
    parse, classify = Recording("parse", 3), Recording("classify", 32)
    worker = Worker("w", db, Pipeline([parse, classify]), PipelineSettings(poll_seconds=0.1))
    while worker.run_once():
        pass
    assert parse.batches and max(parse.batches) <= 3 and sum(parse.batches) == 10
    assert sum(classify.batches) == 10
    assert {r["stage"] for r in rows(db)} == {"done"}


# A worker process whose stage kills it in the middle of the batch, as a segfaulting parser would.
DYING_WORKER = textwrap.dedent(
    """
    import os, sys
    from daemon.config import PipelineSettings
    from daemon.db.session import Database
    from daemon.pipeline.router import Pipeline
    from daemon.pipeline.worker import Worker

    class Deadly:
        name = "parse"
        batch_size = 5
        def waiting_reason(self):
            return None
        def process(self, session, messages):
            os._exit(9)

    db = Database.from_url(sys.argv[1], pool_size=1)
    Worker("doomed", db, Pipeline([Deadly()]), PipelineSettings(max_attempts=3)).run_once()
    """
)


def test_a_message_that_kills_its_worker_is_parked_after_max_attempts_claims(db, db_url):
    [mid] = add_messages(db, 1)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", DYING_WORKER, db_url], cwd=REPO, env=env, timeout=120)
        assert done.returncode == 9
        with db.session() as s, s.begin():  # the dead worker's lease runs out
            s.execute(text("UPDATE messages SET lease_until = now() - interval '1 second'"))
    [row] = rows(db)
    assert (row["stage"], row["attempts"], row["claims"]) == ("parse", 0, 3)

    healthy = Recording("parse", 5)
    worker = Worker("w", db, Pipeline([healthy]), PipelineSettings(max_attempts=3))
    worker.run_once()
    [row] = rows(db)
    assert healthy.batches == []  # not handed to a stage a fourth time
    assert (row["id"], row["stage"], row["parked_stage"], row["lease_owner"]) == (mid, "parked", "parse", None)
    assert "claimed 3 times without finishing" in str(row["last_error"])
    assert "worker died" in str(row["last_error"])
    with db.session() as s:
        assert queue.requeue(s, [mid]) == 1
    [row] = rows(db)
    assert (row["stage"], row["claims"], row["attempts"]) == ("parse", 0, 0)


def test_claims_are_reset_when_a_message_moves_on(db):
    add_messages(db, 1)
    with db.session() as s:
        for _ in range(2):  # two workers died with it
            assert queue.claim(s, ["parse"], "gone", 5, 60)
            with s.begin():
                s.execute(text("UPDATE messages SET lease_until = now() - interval '1 second'"))
    worker = Worker("w", db, Pipeline([Recording("parse", 5), Recording("classify", 5, pause=0)]),
                    PipelineSettings(max_attempts=3))
    assert worker.run_once() is True
    [row] = rows(db)
    assert (row["stage"], row["claims"]) == ("classify", 0)  # a fresh count at the next stage
