"""Daemon instances: who is running, judged by heartbeat, and what that makes of their claims.

Host name and pid do not tell daemons apart (two containers may both be mail-1, pid 7), so each
daemon start registers a random id and keeps its ``heartbeat_at`` moving; lease owners and
``folders.connected_by`` start with that id. Whether an instance still counts as running is
decided by one SQL condition (``ALIVE``), used both to free the leases of dead daemons and to say
which folders are connected: a ``kill -9`` leaves ``folders.connected`` true behind it, the
heartbeat does not lie.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import RowMapping, text
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy import CursorResult

ALIVE = "(i.stopped_at IS NULL AND i.heartbeat_at > now() - make_interval(secs => :stale_after))"
"""Instance ``i`` is running: not stopped, and it beat within ``:stale_after`` seconds."""

# An upsert: it also puts the row back if it was cleaned away while this daemon was paused (a suspended VM).
HEARTBEAT_SQL = text(
    """
    INSERT INTO instances (id, host, pid) VALUES (:id, :host, :pid)
    ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL
    """
)

STOP_INSTANCE_SQL = text("UPDATE instances SET stopped_at = now(), heartbeat_at = now() WHERE id = :id")

# Leases only exist on messages at a pipeline stage, which the partial index ix_messages_claimable
# covers, so this stays cheap however many messages are done. The claim is not taken back: the
# holder died with the message in hand, which is what counting claims is for.
RELEASE_STALE_SQL = text(
    f"""
    UPDATE messages AS m
       SET lease_owner = NULL, lease_until = NULL
      FROM instances AS i
     WHERE m.stage NOT IN ('done', 'quarantined', 'parked')
       AND m.lease_owner IS NOT NULL AND m.lease_until > now()
       AND split_part(m.lease_owner, '/', 1) = i.id
       AND NOT {ALIVE}
    """
)

FORGET_INSTANCES_SQL = text(
    "DELETE FROM instances WHERE heartbeat_at < now() - make_interval(days => :days)"
)

# Every folder with ``connected`` believed only while the instance that set it is alive; what
# `mailsense status` and /healthz show of a folder.
FOLDER_STATES_SQL = text(
    f"""
    SELECT a.name AS account, f.name AS folder,
           COALESCE(f.connected AND {ALIVE}, false) AS connected,
           f.connected_by, i.host AS connected_by_host,
           CAST(EXTRACT(EPOCH FROM now() - i.heartbeat_at) AS float) AS heartbeat_age_seconds,
           f.uidvalidity, f.last_uid, f.highest_modseq, f.last_sync_at, f.last_error, f.last_error_at,
           f.start_uid, f.start_from, f.started_at
      FROM folders f
      JOIN accounts a ON a.id = f.account_id
      LEFT JOIN instances i ON i.id = f.connected_by
     ORDER BY a.name, f.name
    """
)


def register(session: Session, instance_id: str, host: str, pid: int) -> None:
    """Record a daemon start (host and pid for people; the id is what counts); commits."""
    with session.begin():
        session.execute(HEARTBEAT_SQL, {"id": instance_id, "host": host, "pid": pid})
        session.execute(FORGET_INSTANCES_SQL, {"days": 30})


def heartbeat(session: Session, instance_id: str, host: str, pid: int) -> None:
    """This daemon is alive; commits."""
    with session.begin():
        session.execute(HEARTBEAT_SQL, {"id": instance_id, "host": host, "pid": pid})


def stop(session: Session, instance_id: str) -> None:
    """A clean stop: leases this daemon still holds (abandoned batches) may be taken at once; commits."""
    with session.begin():
        session.execute(STOP_INSTANCE_SQL, {"id": instance_id})


def release_stale_leases(session: Session, stale_after_seconds: float) -> int:
    """Free the leases of daemons that are not alive (stopped, or silent for ``stale_after_seconds``).

    Owners that name no known instance (tests, older daemons) are left to run out by themselves.
    """
    with session.begin():
        result = cast("CursorResult[Any]", session.execute(RELEASE_STALE_SQL, {"stale_after": stale_after_seconds}))
        return result.rowcount


def folder_states(session: Session, stale_after_seconds: float) -> list[RowMapping]:
    """Each folder's sync state, ``connected`` derived from its holder's heartbeat."""
    return list(session.execute(FOLDER_STATES_SQL, {"stale_after": stale_after_seconds}).mappings())
