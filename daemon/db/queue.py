"""The work-queue SQL, kept in one place.

Workers claim messages with ``FOR UPDATE SKIP LOCKED`` and stamp a lease, then commit at once,
so the (possibly slow) stage runs outside any transaction. A worker that dies leaves a lease
that simply expires; another worker or daemon picks the message up again. Every write after
the claim checks ``lease_owner`` so a worker whose lease expired cannot overwrite the newer
owner's result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import text
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy import CursorResult, Result

TERMINAL_STAGES = ("done", "quarantined", "parked")

CLAIM_SQL = text(
    """
    WITH claimable AS (
        SELECT id
          FROM messages
         WHERE stage = ANY(:stages)
           AND next_attempt_at <= now()
           AND (lease_until IS NULL OR lease_until < now())
         ORDER BY next_attempt_at, id
         LIMIT :limit
           FOR UPDATE SKIP LOCKED
    )
    UPDATE messages AS m
       SET lease_owner = :owner,
           lease_until = now() + make_interval(secs => :lease_seconds)
      FROM claimable
     WHERE m.id = claimable.id
    RETURNING m.id, m.stage
    """
)

ADVANCE_SQL = text(
    """
    UPDATE messages
       SET stage = :to_stage, attempts = 0, last_error = NULL,
           lease_owner = NULL, lease_until = NULL, next_attempt_at = now(), updated_at = now()
     WHERE id = :id AND lease_owner = :owner AND stage = :from_stage
    """
)

QUARANTINE_SQL = text(
    """
    UPDATE messages
       SET stage = 'quarantined', quarantine_reason = :reason, parked_stage = stage,
           lease_owner = NULL, lease_until = NULL, updated_at = now()
     WHERE id = :id AND lease_owner = :owner AND stage = :from_stage
    """
)

# attempts counts consecutive failures at the current stage; the delay doubles per failure.
FAIL_SQL = text(
    """
    UPDATE messages
       SET attempts = attempts + 1,
           last_error = :error,
           stage = CASE WHEN attempts + 1 >= :max_attempts THEN 'parked' ELSE stage END,
           parked_stage = CASE WHEN attempts + 1 >= :max_attempts THEN stage ELSE parked_stage END,
           next_attempt_at = now() + make_interval(secs => :base_delay * power(2, attempts)),
           lease_owner = NULL, lease_until = NULL, updated_at = now()
     WHERE id = :id AND lease_owner = :owner AND stage = :from_stage
    RETURNING stage
    """
)

REQUEUE_SQL = text(
    """
    UPDATE messages
       SET stage = parked_stage, attempts = 0, last_error = NULL, quarantine_reason = NULL,
           next_attempt_at = now(), updated_at = now()
     WHERE stage IN ('parked', 'quarantined') AND parked_stage IS NOT NULL
       AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(:ids))
    """
)


@dataclass(frozen=True)
class Claimed:
    id: int
    stage: str


def claim(session: Session, stages: Sequence[str], owner: str, limit: int, lease_seconds: int) -> list[Claimed]:
    """Claim up to ``limit`` due messages waiting at any of ``stages``; commits."""
    with session.begin():
        rows = session.execute(
            CLAIM_SQL,
            {"stages": list(stages), "owner": owner, "limit": limit, "lease_seconds": lease_seconds},
        ).all()
    return [Claimed(id=r.id, stage=r.stage) for r in rows]


def _rowcount(result: Result[*tuple[Any, ...]]) -> int:
    # Session.execute is typed as returning a Result; for an UPDATE it is a CursorResult, which has rowcount.
    return cast("CursorResult[*tuple[Any, ...]]", result).rowcount


def advance(session: Session, message_id: int, owner: str, from_stage: str, to_stage: str) -> bool:
    return _rowcount(session.execute(
        ADVANCE_SQL, {"id": message_id, "owner": owner, "from_stage": from_stage, "to_stage": to_stage}
    )) == 1


def quarantine(session: Session, message_id: int, owner: str, from_stage: str, reason: str) -> bool:
    return _rowcount(session.execute(
        QUARANTINE_SQL, {"id": message_id, "owner": owner, "from_stage": from_stage, "reason": reason[:2000]}
    )) == 1


def fail(
    session: Session, message_id: int, owner: str, from_stage: str, error: str, max_attempts: int, base_delay: float
) -> str | None:
    """Record a failure; return the new stage ('parked' when out of attempts) or None if we lost the lease."""
    return session.execute(
        FAIL_SQL,
        {
            "id": message_id,
            "owner": owner,
            "from_stage": from_stage,
            "error": error[:2000],
            "max_attempts": max_attempts,
            "base_delay": base_delay,
        },
    ).scalar_one_or_none()


def requeue(session: Session, message_ids: Sequence[int] | None = None) -> int:
    """Send parked or quarantined messages back to the stage they stopped at (after a fix)."""
    with session.begin():
        return _rowcount(session.execute(REQUEUE_SQL, {"ids": list(message_ids) if message_ids else None}))


LOCAL_OWNERS_SQL = text(
    """
    SELECT DISTINCT lease_owner FROM messages
     WHERE lease_owner LIKE :prefix AND lease_until > now()
    """
)

RELEASE_OWNER_SQL = text("UPDATE messages SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = :owner")


def release_dead_local_leases(session: Session, hostname: str, is_alive: Callable[[int], bool]) -> int:
    """Free leases held by workers of daemons on this host that no longer run (after a crash or kill -9).

    Leases of other hosts are left to expire: we cannot tell whether those daemons are alive.
    """
    released = 0
    with session.begin():
        owners = session.execute(LOCAL_OWNERS_SQL, {"prefix": f"{hostname}:%"}).scalars().all()
        for owner in owners:
            pid_text = owner[len(hostname) + 1 :].split("/", 1)[0]
            if pid_text.isdigit() and not is_alive(int(pid_text)):
                released += _rowcount(session.execute(RELEASE_OWNER_SQL, {"owner": owner}))
    return released
