"""The work queue on a real Postgres: claims never overlap, leases expire, failures back off and park."""

from __future__ import annotations

import threading

from sqlalchemy import text

from daemon.config import PipelineSettings
from daemon.db import queue
from daemon.db.session import Database
from daemon.ingest.store import Stored, ensure_account, ensure_folder, store_imap_message, store_message
from daemon.pipeline.router import Pipeline
from daemon.pipeline.stage import Outcome
from daemon.pipeline.worker import Worker
from tests.helpers import make_message


def add_messages(db: Database, n: int) -> list[int]:
    ids = []
    with db.session() as s, s.begin():
        account = ensure_account(s, "acct")
        for i in range(n):
            _, message_id = store_message(s, account_id=account.id, raw=make_message(f"m{i}"), source="import",
                                          first_stage="parse")
            ids.append(message_id)
    return ids


def test_concurrent_claims_never_overlap(db):
    add_messages(db, 60)
    claimed: dict[str, list[int]] = {}

    def claimer(name: str) -> None:
        got: list[int] = []
        with db.session() as s:
            while batch := queue.claim(s, ["parse"], name, 7, 60):
                got.extend(c.id for c in batch)
        claimed[name] = got

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in claimed.values() for i in ids]
    assert len(all_ids) == 60 and len(set(all_ids)) == 60


def test_expired_lease_is_claimed_again_and_the_old_owner_cannot_write(db):
    [mid] = add_messages(db, 1)
    with db.session() as s:
        assert [c.id for c in queue.claim(s, ["parse"], "old", 10, 60)] == [mid]
        assert queue.claim(s, ["parse"], "new", 10, 60) == []
        with s.begin():
            s.execute(text("UPDATE messages SET lease_until = now() - interval '1 second'"))
        assert [c.id for c in queue.claim(s, ["parse"], "new", 10, 60)] == [mid]
        with s.begin():
            assert queue.advance(s, mid, "old", "parse", "done") is False  # lost its lease
            assert queue.advance(s, mid, "new", "parse", "done") is True


class FlakyStage:
    name = "parse"
    batch_size = 10

    def __init__(self) -> None:
        self.calls = 0

    def waiting_reason(self) -> str | None:
        return None

    def process(self, session, messages):  # type: ignore[no-untyped-def]
        self.calls += 1
        return {m.id: Outcome.retry("upstream unavailable") for m in messages}


def test_failures_back_off_then_park_and_requeue_brings_them_back(db):
    [mid] = add_messages(db, 1)
    stage = FlakyStage()
    settings = PipelineSettings(max_attempts=3, retry_base_seconds=0.01, poll_seconds=0.1)
    worker = Worker("w", db, Pipeline([stage]), settings)
    for _ in range(3):
        with db.session() as s, s.begin():
            s.execute(text("UPDATE messages SET next_attempt_at = now()"))
        assert worker.run_once() is True
    with db.session() as s:
        row = s.execute(text("SELECT stage, parked_stage, attempts, last_error FROM messages")).one()
    assert (row.stage, row.parked_stage, row.attempts) == ("parked", "parse", 3)
    assert row.last_error == "upstream unavailable"
    assert worker.run_once() is False  # parked messages are not claimed
    with db.session() as s:
        assert queue.requeue(s, [mid]) == 1
        assert s.execute(text("SELECT stage, attempts FROM messages")).one() == ("parse", 0)


def test_a_stage_that_raises_fails_the_batch_without_losing_it(db):
    add_messages(db, 2)

    class Broken(FlakyStage):
        def process(self, session, messages):  # type: ignore[no-untyped-def]
            raise RuntimeError("model file missing\nwith a second line that must not be logged")

    worker = Worker("w", db, Pipeline([Broken()]), PipelineSettings(max_attempts=5))
    assert worker.run_once() is True
    with db.session() as s:
        rows = s.execute(text("SELECT stage, attempts, last_error, lease_owner FROM messages")).all()
    assert all(r.stage == "parse" and r.attempts == 1 and r.lease_owner is None for r in rows)
    assert rows[0].last_error == "RuntimeError: model file missing"


def test_known_content_at_a_new_location_is_relocated_not_duplicated(db):
    raw = make_message("moved")
    with db.session() as s, s.begin():
        inbox = ensure_folder(s, "acct", "INBOX")
        junk = ensure_folder(s, "acct", "Junk")
    with db.session() as s:
        assert store_imap_message(s, inbox, 1, 10, raw, "parse") is Stored.inserted
        assert store_imap_message(s, inbox, 1, 10, raw, "parse") is Stored.duplicate
        assert store_imap_message(s, junk, 7, 3, raw, "parse") is Stored.relocated
        row = s.execute(text("SELECT count(*) AS n, max(folder_id) AS f, max(uid) AS uid FROM messages")).one()
        last = s.execute(text("SELECT name, last_uid FROM folders ORDER BY name")).all()
    assert (row.n, row.f, row.uid) == (1, junk.id, 3)
    assert [tuple(r) for r in last] == [("INBOX", 10), ("Junk", 3)]
