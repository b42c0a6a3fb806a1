"""The SQL of delivery, in one place: claiming an approved draft, recording attempts and results.

A claim is two locks. ``FOR UPDATE SKIP LOCKED`` picks a draft no other daemon is looking at,
and a session-level advisory lock on it, taken in the same transaction, outlives the commit: it
is held for the whole delivery and the server drops it by itself when the holder dies (kill -9,
a lost connection). The commit that ends the claim also stores the reply's Message-ID, so the
ID is durable before any byte leaves. Any later attempt (after a crash, by this or another
daemon) finds ``delivery_phase`` set and looks for that Message-ID in the mailbox first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from daemon.review.schema import CHANNEL  # what the drafts triggers announce on

LOCK_NAMESPACE_SQL = "hashtext('mailsense.delivery')"

CANDIDATE_SQL = """
SELECT d.id, d.text, d.outgoing_message_id, d.delivery_phase, d.delivery_attempts,
       m.raw AS original_raw, a.name AS account
  FROM drafts d
  JOIN messages m ON m.id = d.message_id
  JOIN accounts a ON a.id = m.account_id
 WHERE d.status = 'approved'
   AND d.outcome IS NULL
   AND a.name = ANY(%(accounts)s)
   AND d.delivery_phase IS DISTINCT FROM 'held'
   AND (d.delivery_next_at IS NULL OR d.delivery_next_at <= now())
   AND d.id <> ALL(%(skip)s)
 ORDER BY d.id
 LIMIT 1
   FOR UPDATE OF d SKIP LOCKED
"""

TRY_LOCK_SQL = f"SELECT pg_try_advisory_lock({LOCK_NAMESPACE_SQL}, (%(id)s %% 2147483647)::int) AS locked"
UNLOCK_SQL = f"SELECT pg_advisory_unlock({LOCK_NAMESPACE_SQL}, (%(id)s %% 2147483647)::int)"

BEGIN_ATTEMPT_SQL = """
UPDATE drafts
   SET outgoing_message_id = COALESCE(outgoing_message_id, %(message_id)s),
       delivery_attempts = delivery_attempts + 1,
       delivery_phase = COALESCE(delivery_phase, 'delivering')
 WHERE id = %(id)s
RETURNING outgoing_message_id
"""

SMTP_DATA_SQL = "UPDATE drafts SET delivery_phase = 'smtp_data' WHERE id = %(id)s"

DELIVERED_SQL = """
UPDATE drafts
   SET status = %(status)s, delivered_at = now(), delivered_via = %(via)s, delivered_sha256 = %(sha256)s,
       delivery_phase = NULL, delivery_error = %(note)s, delivery_next_at = NULL
 WHERE id = %(id)s AND status = 'approved'
"""

FAILED_SQL = """
UPDATE drafts
   SET delivery_error = %(error)s, delivery_next_at = now() + make_interval(secs => %(delay)s),
       delivery_phase = %(phase)s
 WHERE id = %(id)s
"""

HOLD_SQL = "UPDATE drafts SET delivery_phase = 'held', delivery_error = %(error)s WHERE id = %(id)s"

AUTO_APPROVE_SQL = """
UPDATE drafts d SET status = 'approved', reviewed_by = 'mailsense auto_send'
  FROM messages m JOIN accounts a ON a.id = m.account_id
 WHERE m.id = d.message_id AND a.name = %(account)s
   AND d.status = 'pending' AND d.text IS NOT NULL AND d.confidence >= %(threshold)s
RETURNING d.id
"""


@dataclass(frozen=True)
class Claim:
    """An approved draft this daemon now delivers, and whether an earlier attempt may have left a copy."""

    id: int
    account: str
    text: str
    original_raw: bytes
    outgoing_message_id: str
    earlier_phase: str | None  # None: first attempt since the last clean result; else look before sending


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    """A connection of the deliverer's own: it holds the advisory locks and LISTENs for changes."""
    conn = psycopg.connect(url, autocommit=True, connect_timeout=10, row_factory=dict_row,
                           application_name="mailsense-delivery")
    conn.execute("SET lock_timeout = '30s'")
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


def claim_next(conn: psycopg.Connection[dict[str, Any]], accounts: list[str],
               new_message_id: Callable[[str], str]) -> Claim | None:
    """Lock the next due approved draft of ``accounts``; None when there is none free.

    ``new_message_id(account)`` makes the Message-ID a first attempt stores; a later one keeps the first.
    """
    skip: list[int] = []
    while True:
        with conn.transaction():
            row = conn.execute(CANDIDATE_SQL, {"accounts": accounts, "skip": skip}).fetchone()
            if row is None:
                return None
            locked = conn.execute(TRY_LOCK_SQL, {"id": row["id"]}).fetchone()
            if not (locked and locked["locked"]):
                skip.append(row["id"])  # another daemon is delivering it right now
                continue
            fresh_id = new_message_id(row["account"])
            stored = conn.execute(BEGIN_ATTEMPT_SQL, {"id": row["id"], "message_id": fresh_id}).fetchone()
        assert stored is not None
        return Claim(
            id=row["id"], account=row["account"], text=row["text"] or "", original_raw=bytes(row["original_raw"]),
            outgoing_message_id=stored["outgoing_message_id"], earlier_phase=row["delivery_phase"],
        )


def release(conn: psycopg.Connection[dict[str, Any]], draft_id: int) -> None:
    conn.execute(UNLOCK_SQL, {"id": draft_id})


def smtp_data_begins(conn: psycopg.Connection[dict[str, Any]], draft_id: int) -> None:
    conn.execute(SMTP_DATA_SQL, {"id": draft_id})


def delivered(conn: psycopg.Connection[dict[str, Any]], draft_id: int, *, status: str, via: str,
              sha256: str | None, note: str | None = None) -> bool:
    """Record the result; False when the draft was no longer approved (the reply is out all the same)."""
    cur = conn.execute(DELIVERED_SQL, {"id": draft_id, "status": status, "via": via, "sha256": sha256,
                                       "note": note})
    return cur.rowcount == 1


def failed(conn: psycopg.Connection[dict[str, Any]], draft_id: int, error: str, delay: float,
           phase: str | None) -> None:
    """Retry after ``delay``; ``phase`` 'smtp_data' when the SMTP server may have the message already."""
    conn.execute(FAILED_SQL, {"id": draft_id, "error": error[:2000], "delay": delay, "phase": phase})


def hold(conn: psycopg.Connection[dict[str, Any]], draft_id: int, error: str) -> None:
    conn.execute(HOLD_SQL, {"id": draft_id, "error": error[:2000]})


def auto_approve(conn: psycopg.Connection[dict[str, Any]], account: str, threshold: float) -> list[int]:
    return [row["id"] for row in conn.execute(AUTO_APPROVE_SQL, {"account": account, "threshold": threshold})]
