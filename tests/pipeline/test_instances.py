"""Daemon instances are told apart by a random id with a heartbeat, not by host name and pid.

Two containers may both be called ``mail-1`` and both run the daemon as pid 7: a lease must be freed
only when the instance that holds it stopped beating, whatever host and pid it shares with another.
"""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import text

from daemon.db import instances
from daemon.db.session import Database
from daemon.ingest.store import ensure_account, store_message
from tests.helpers import make_message, wait_for


def add_instance(db: Database, host: str, pid: int, heartbeat_age_seconds: float, stopped: bool = False) -> str:
    instance_id = str(uuid.uuid4())
    with db.session() as s, s.begin():
        s.execute(
            text("INSERT INTO instances (id, host, pid, heartbeat_at, stopped_at) VALUES (:id, :host, :pid, "
                 "now() - make_interval(secs => :age), CASE WHEN :stopped THEN now() END)"),
            {"id": instance_id, "host": host, "pid": pid, "age": heartbeat_age_seconds, "stopped": stopped},
        )
    return instance_id


def add_leased(db: Database, owner: str, subject: str) -> int:
    with db.session() as s, s.begin():
        account = ensure_account(s, "acct")
        _, message_id = store_message(s, account_id=account.id, raw=make_message(subject), source="import",
                                      first_stage="parse")
        s.execute(text("UPDATE messages SET lease_owner = :owner, lease_until = now() + interval '1 hour', "
                       "claims = 1 WHERE id = :id"), {"owner": owner, "id": message_id})
    return message_id


def owners(db: Database) -> dict[int, str | None]:
    with db.session() as s:
        return {r.id: r.lease_owner for r in s.execute(text("SELECT id, lease_owner FROM messages"))}


def test_only_the_leases_of_a_stale_or_stopped_instance_are_released(db):
    live = add_instance(db, "mail-1", 7, heartbeat_age_seconds=1)
    stale = add_instance(db, "mail-1", 7, heartbeat_age_seconds=600)  # same host and pid, another container
    stopped = add_instance(db, "mail-1", 8, heartbeat_age_seconds=1, stopped=True)
    live_msg = add_leased(db, f"{live}/w0", "live")
    stale_msg = add_leased(db, f"{stale}/w1", "stale")
    stopped_msg = add_leased(db, f"{stopped}/w0", "stopped")
    foreign_msg = add_leased(db, "some-test-worker", "no instance row")  # left to expire
    with db.session() as s:
        released = instances.release_stale_leases(s, stale_after_seconds=30)
    assert released == 2
    assert owners(db) == {live_msg: f"{live}/w0", stale_msg: None, stopped_msg: None,
                          foreign_msg: "some-test-worker"}


def test_a_starting_daemon_frees_a_dead_twin_but_not_a_live_one(daemon_factory, db):
    """Both twins claim this very host name and a pid that is not alive here: only the heartbeat tells."""
    dead_pid = 2**22 + 12345  # above pid_max on Linux: never alive on this host
    host = socket.gethostname()
    assert not os.path.exists(f"/proc/{dead_pid}")
    live = add_instance(db, host, dead_pid, heartbeat_age_seconds=0)
    stale = add_instance(db, host, dead_pid, heartbeat_age_seconds=3600)
    live_msg = add_leased(db, f"{live}/w0", "held by a live twin")
    stale_msg = add_leased(db, f"{stale}/w0", "held by a dead twin")
    # Leases in the old host:pid form of this host, as the previous release would have freed them.
    old_style = add_leased(db, f"{host}:{dead_pid}/w0", "old-style owner")

    daemon = daemon_factory(accounts=False).start()

    def stage_of(message_id: int) -> str:
        with db.session() as s:
            return s.execute(text("SELECT stage FROM messages WHERE id = :id"), {"id": message_id}).scalar_one()

    wait_for(lambda: stage_of(stale_msg) == "done", 60, "the dead twin's message processed", daemon.log)
    current = owners(db)
    assert current[live_msg] == f"{live}/w0" and stage_of(live_msg) == "parse"
    assert current[old_style] == f"{host}:{dead_pid}/w0"  # unknown owner: its lease runs out by itself
    with db.session() as s:
        mine = s.execute(text("SELECT id, host, pid, stopped_at FROM instances WHERE id NOT IN (:a, :b)"),
                         {"a": live, "b": stale}).one()
    assert mine.host == host and mine.stopped_at is None
    uuid.UUID(mine.id)  # a random id, not host:pid
    assert daemon.terminate() == 0
    with db.session() as s:
        stopped_at = s.execute(text("SELECT stopped_at FROM instances WHERE id = :id"), {"id": mine.id}).scalar()
    assert stopped_at is not None
