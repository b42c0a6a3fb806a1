"""Cluster-wide locks: work that must run once across every daemon sharing the database.

Several daemons (or a daemon and a command) may try the same long job at once: training the
starter model today, scheduled retraining later. A PostgreSQL session-level advisory lock on a
connection of its own serialises them without holding a transaction open for minutes, and the
server drops it by itself if the holder dies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text

LOCK_SQL = text("SELECT pg_advisory_lock(hashtext(:key))")
UNLOCK_SQL = text("SELECT pg_advisory_unlock(hashtext(:key))")


@contextmanager
def advisory_lock(engine: Engine, key: str) -> Iterator[None]:
    """Block until this process holds the lock named ``key``; release it on exit."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(LOCK_SQL, {"key": key})
        try:
            yield
        finally:
            conn.execute(UNLOCK_SQL, {"key": key})


TRY_LOCK_SQL = text("SELECT pg_try_advisory_lock(hashtext(:key))")


@contextmanager
def try_advisory_lock(engine: Engine, key: str) -> Iterator[bool]:
    """Take the lock named ``key`` if nobody holds it; yields whether this process got it.

    For scheduled jobs: when another daemon is already running the job, this one records a skip
    instead of queueing a second run behind it.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        held = bool(conn.execute(TRY_LOCK_SQL, {"key": key}).scalar())
        try:
            yield held
        finally:
            if held:
                conn.execute(UNLOCK_SQL, {"key": key})
