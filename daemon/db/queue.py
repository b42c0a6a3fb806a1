"""The work-queue SQL, kept in one place.

Workers claim messages with ``FOR UPDATE SKIP LOCKED`` and stamp a lease, then commit at once,
so the (possibly slow) stage runs outside any transaction. Every write after the claim checks
``lease_owner`` so a worker whose lease expired cannot overwrite the newer owner's result.

Leases are renewed (``renew``) while the batch runs, so a batch may take longer than
``lease_seconds`` without another worker taking it over. A worker that dies leaves a lease that
simply expires, or is released at once when the daemon it belonged to is seen to be gone
(``daemon.db.instances.release_stale_leases``: owners are ``<instance id>/<worker>``, and instances
heartbeat in the ``instances`` table).

``claims`` counts the claims at the current stage. A message that kills its worker never has
a failure recorded, so ``attempts`` alone would let it be claimed forever; counting the claim
as an attempt parks it after ``max_attempts`` claims without an outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import text
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from sqlalchemy import CursorResult, Result

TERMINAL_STAGES = ("done", "quarantined", "parked")

# The stages with due, unleased messages, oldest first: the worker claims one stage at a time,
# sized by that stage's own batch_size. Served by the partial index ix_messages_claimable.
DUE_STAGES_SQL = text(
    """
    SELECT stage
      FROM messages
     WHERE stage = ANY(:stages)
       AND next_attempt_at <= now()
       AND (lease_until IS NULL OR lease_until < now())
     GROUP BY stage
     ORDER BY min(next_attempt_at)
    """
)

# A message claimed max_attempts times at this stage without finishing is parked instead of being
# handed to a worker once more: the claims that recorded no failure ended with the worker dying.
PARK_WORN_SQL = text(
    """
    WITH worn AS (
        SELECT id
          FROM messages
         WHERE stage = ANY(:stages)
           AND next_attempt_at <= now()
           AND (lease_until IS NULL OR lease_until < now())
           AND claims >= :max_claims
           FOR UPDATE SKIP LOCKED
    )
    UPDATE messages AS m
       SET parked_stage = m.stage,
           stage = 'parked',
           last_error = 'claimed ' || m.claims || ' times without finishing: '
                        || CASE WHEN m.attempts = 0 THEN 'the worker died each time'
                                ELSE 'the worker died ' || (m.claims - m.attempts) || ' of those times; last error: '
                                     || COALESCE(m.last_error, 'none') END,
           lease_owner = NULL, lease_until = NULL, updated_at = now()
      FROM worn
     WHERE m.id = worn.id
    RETURNING m.id, m.parked_stage AS stage, m.claims
    """
)

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
           lease_until = now() + make_interval(secs => :lease_seconds),
           claims = m.claims + 1
      FROM claimable
     WHERE m.id = claimable.id
    RETURNING m.id, m.stage
    """
)

RENEW_SQL = text(
    """
    UPDATE messages
       SET lease_until = now() + make_interval(secs => :lease_seconds)
     WHERE id = ANY(:ids) AND lease_owner = :owner
    """
)

# The message was not at fault (its stage's service is down, the daemon is stopping): the claim is
# taken back, so it does not count toward parking.
RELEASE_SQL = text(
    """
    UPDATE messages
       SET lease_owner = NULL, lease_until = NULL, claims = GREATEST(claims - 1, 0)
     WHERE id = ANY(:ids) AND lease_owner = :owner
    """
)

ADVANCE_SQL = text(
    """
    UPDATE messages
       SET stage = :to_stage, attempts = 0, claims = 0, last_error = NULL,
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
       SET stage = parked_stage, attempts = 0, claims = 0, last_error = NULL, quarantine_reason = NULL,
           next_attempt_at = now(), updated_at = now()
     WHERE stage IN ('parked', 'quarantined') AND parked_stage IS NOT NULL
       AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(:ids))
    """
)


@dataclass(frozen=True)
class Claimed:
    id: int
    stage: str


@dataclass(frozen=True)
class Parked:
    id: int
    stage: str
    claims: int


def due_stages(session: Session, stages: Sequence[str]) -> list[str]:
    """Which of ``stages`` have due, unleased messages, the stage of the oldest first."""
    with session.begin():
        return list(session.execute(DUE_STAGES_SQL, {"stages": list(stages)}).scalars())


def claim(
    session: Session,
    stages: Sequence[str],
    owner: str,
    limit: int,
    lease_seconds: float,
    max_claims: int | None = None,
    parked: list[Parked] | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due messages waiting at any of ``stages``; commits.

    With ``max_claims``, due messages already claimed that often at their stage are parked in
    the same transaction instead (appended to ``parked`` when given).
    """
    with session.begin():
        if max_claims is not None:
            worn = session.execute(PARK_WORN_SQL, {"stages": list(stages), "max_claims": max_claims}).all()
            if parked is not None:
                parked.extend(Parked(id=r.id, stage=r.stage, claims=r.claims) for r in worn)
        rows = session.execute(
            CLAIM_SQL,
            {"stages": list(stages), "owner": owner, "limit": limit, "lease_seconds": lease_seconds},
        ).all()
    return [Claimed(id=r.id, stage=r.stage) for r in rows]


def _rowcount(result: Result[*tuple[Any, ...]]) -> int:
    # Session.execute is typed as returning a Result; for an UPDATE it is a CursorResult, which has rowcount.
    return cast("CursorResult[*tuple[Any, ...]]", result).rowcount


def renew(session: Session, message_ids: Sequence[int], owner: str, lease_seconds: float) -> int:
    """Extend the leases ``owner`` still holds on ``message_ids``; commits; returns how many it holds."""
    with session.begin():
        return _rowcount(session.execute(
            RENEW_SQL, {"ids": list(message_ids), "owner": owner, "lease_seconds": lease_seconds}
        ))


def release(session: Session, message_ids: Sequence[int], owner: str) -> int:
    """Give back leases without an outcome and without the claim counting; commits."""
    with session.begin():
        return _rowcount(session.execute(RELEASE_SQL, {"ids": list(message_ids), "owner": owner}))


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


