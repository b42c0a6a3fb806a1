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
