"""What the person did with a reply: watch the account's Sent folder for replies in a draft's thread.

With ``drafts_folder`` delivery the person edits and sends from their own client, so the result
is only visible in Sent. Each check reads what is new in Sent by UID (a checkpoint per account,
at most ``BATCH`` messages per check, headers first), and a sent message answers a draft when
its In-Reply-To/References name the message the draft answers:

- the draft was delivered and is still in Drafts byte for byte: the person wrote another reply,
  so the untouched draft is removed from Drafts → ``discarded`` (status ``superseded``);
- the draft was delivered: the sent text is compared with the draft (difflib ratio, quoted
  history left out): 0.7 or more → ``sent_as_drafted`` (the threshold Inbox Zero uses), else
  ``sent_after_edits``, with the figure in ``sent_similarity``;
- no reply was delivered (pending, needs a human, approved but not yet out, rejected):
  ``replied_without_draft``; an approved draft then is not delivered any more, and one still
  awaiting review leaves the queue (status ``superseded``).

Checks are cheap when there is nothing to learn: no open draft, no IMAP connection. Two daemons
never check one account at once (an advisory lock per account).
"""

from __future__ import annotations

import difflib
import imaplib
import logging
import re
import threading
import time
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser
from typing import Any

import psycopg

from daemon.config import AccountSettings
from daemon.delivery import mailbox
from daemon.errors import describe_error
from daemon.imap import connection, operations
from daemon.ingest.backoff import OutageLog
from daemon.mail.mime import message_ids, parse_message

log = logging.getLogger(__name__)

SENT_AS_DRAFTED = 0.7
OUTAGES: tuple[type[BaseException], ...] = (*connection.CONNECTION_ERRORS, connection.AuthenticationFailed)
BATCH = 200  # Sent messages read per check at most; the checkpoint catches up over later checks
COMPARED_CHARS = 5000
_THREAD_FIELDS = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID IN-REPLY-TO REFERENCES)]"
_QUOTE_START = re.compile(r"^(?:On .{0,300}wrote:\s*$|-{2,}\s*Original Message\s*-{2,}|>)",
                          re.IGNORECASE | re.MULTILINE)

OPEN_DRAFTS_SQL = """
SELECT d.id, d.status, d.text, d.outgoing_message_id, d.delivered_sha256, d.created_at, m.message_id AS original_id
  FROM drafts d
  JOIN messages m ON m.id = d.message_id
 WHERE m.account_id = %(account_id)s
   AND d.outcome IS NULL
   AND d.status IN ('pending', 'needs_human', 'approved', 'rejected', 'delivered')
   AND d.created_at > now() - interval '30 days'
   AND m.message_id IS NOT NULL
 ORDER BY d.id
 LIMIT 5000
"""
ACCOUNT_SQL = "SELECT id FROM accounts WHERE name = %(name)s"
TRY_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('mailsense.outcome'), %(account_id)s) AS locked"
UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtext('mailsense.outcome'), %(account_id)s)"
CHECKPOINT_SQL = "SELECT folder, uidvalidity, last_uid FROM sent_checkpoints WHERE account_id = %(account_id)s"
SAVE_CHECKPOINT_SQL = """
INSERT INTO sent_checkpoints (account_id, folder, uidvalidity, last_uid, checked_at)
VALUES (%(account_id)s, %(folder)s, %(uidvalidity)s, %(last_uid)s, now())
ON CONFLICT (account_id) DO UPDATE
   SET folder = EXCLUDED.folder, uidvalidity = EXCLUDED.uidvalidity, last_uid = EXCLUDED.last_uid, checked_at = now()
"""
RECORD_SQL = """
UPDATE drafts SET outcome = %(outcome)s, sent_similarity = %(similarity)s, outcome_at = now()
 WHERE id = %(id)s AND outcome IS NULL
"""
# The status follows the outcome where review's transitions allow it: a delivered draft the person sent
# is 'sent'; one left untouched, or a draft still awaiting review when the person answered by hand,
# is 'superseded' (it leaves the review queue). Approved and rejected drafts keep their status.
STATUS_AFTER_SQL = """
UPDATE drafts SET status = CASE WHEN %(outcome)s IN ('sent_as_drafted', 'sent_after_edits') THEN 'sent'
                                ELSE 'superseded' END
 WHERE id = %(id)s
   AND (status = 'delivered' OR (status IN ('pending', 'needs_human') AND %(outcome)s = 'replied_without_draft'))
"""


def reply_text(body: str) -> str:
    """The person's own words: everything before the quoted history, white space collapsed."""
    match = _QUOTE_START.search(body)
    own = body[: match.start()] if match else body
    return " ".join(own.split()).lower()[:COMPARED_CHARS]


def similarity(draft: str, sent: str) -> float:
    """How much of the draft the sent reply kept, 0-1 (difflib's ratio on the words as written)."""
    a, b = reply_text(draft), reply_text(sent)
    if not a and not b:
        return 1.0
    return round(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(), 4)


class OutcomeWatcher:
    def __init__(self, accounts: list[AccountSettings], stop: threading.Event) -> None:
        self.accounts = accounts
        self.stop = stop
        self.next_check: dict[str, float] = {}
        self.outages = {a.name: OutageLog(log, f"reading Sent of account {a.name}") for a in accounts}

    def check_due(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        now = time.monotonic()
        for account in self.accounts:
            if self.stop.is_set() or now < self.next_check.get(account.name, 0.0):
                continue
            self.next_check[account.name] = now + account.delivery.outcome_check_seconds
            try:
                self.check(conn, account)
                self.outages[account.name].recovered()
            except OUTAGES as exc:
                self.outages[account.name].failed(type(exc).__name__, describe_error(exc),
                                                  account.delivery.outcome_check_seconds)

    def check(self, conn: psycopg.Connection[dict[str, Any]], account: AccountSettings) -> int:
        """Read what is new in Sent and record outcomes; return how many were recorded."""
        row = conn.execute(ACCOUNT_SQL, {"name": account.name}).fetchone()
        if row is None:
            return 0
        account_id = row["id"]
        locked = conn.execute(TRY_LOCK_SQL, {"account_id": account_id}).fetchone()
        if not (locked and locked["locked"]):
            return 0
        try:
            drafts = conn.execute(OPEN_DRAFTS_SQL, {"account_id": account_id}).fetchall()
            if not drafts:
                return 0
            return self._read_sent(conn, account, account_id, drafts)
        finally:
            conn.execute(UNLOCK_SQL, {"account_id": account_id})

    def _read_sent(self, conn: psycopg.Connection[dict[str, Any]], account: AccountSettings, account_id: int,
                   drafts: list[dict[str, Any]]) -> int:
        by_original = {d["original_id"]: d for d in drafts}
        recorded = 0
        mb = connection.connect(account)
        try:
            sent = mailbox.sent_folder(mb, account.delivery.sent_folder)
            uidvalidity = operations.select(mb, sent, readonly=True)
            point = conn.execute(CHECKPOINT_SQL, {"account_id": account_id}).fetchone()
            if point and point["folder"] == sent and point["uidvalidity"] == uidvalidity:
                uids = connection.search_uids_above(mb, point["last_uid"])
                last_uid = point["last_uid"]
            else:  # first look (or a rebuilt folder): what was sent since the oldest open draft
                uids = _uids_since(mb, min(d["created_at"] for d in drafts))
                last_uid = _uidnext(mb) - 1
            uids = uids[:BATCH]
            headers = connection.fetch_section(mb, uids, _THREAD_FIELDS)
            for uid in sorted(headers):
                parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(headers[uid], headersonly=True)
                refs = message_ids([parsed.get("In-Reply-To"), parsed.get("References")])
                draft = next((by_original[r] for r in reversed(refs) if r in by_original), None)
                if draft is not None and self._record(conn, mb, account, sent, uid, draft):
                    by_original.pop(draft["original_id"], None)
                    recorded += 1
            if uids:
                last_uid = uids[-1]
            conn.execute(SAVE_CHECKPOINT_SQL, {"account_id": account_id, "folder": sent,
                                               "uidvalidity": uidvalidity, "last_uid": max(last_uid, 0)})
        finally:
            connection.close(mb)
        return recorded

    def _record(self, conn: psycopg.Connection[dict[str, Any]], mb: Any, account: AccountSettings, sent: str,
                uid: int, draft: dict[str, Any]) -> bool:
        if draft["status"] != "delivered":
            outcome, score = "replied_without_draft", None
        else:
            raw = connection.fetch_raw(mb, [uid]).get(uid)
            score = similarity(draft["text"] or "", parse_message(raw).body_text) if raw else None
            outcome = "sent_as_drafted" if (score or 0.0) >= SENT_AS_DRAFTED else "sent_after_edits"
            drafts_folder = mailbox.drafts_folder(mb, account.delivery.drafts_folder)
            if draft["delivered_sha256"] and mailbox.is_untouched(
                    mb, drafts_folder, draft["outgoing_message_id"], draft["delivered_sha256"]):
                outcome = "discarded"
            operations.select(mb, sent, readonly=True)
        with conn.transaction():
            changed = conn.execute(RECORD_SQL, {"id": draft["id"], "outcome": outcome, "similarity": score}).rowcount
            if changed:
                conn.execute(STATUS_AFTER_SQL, {"id": draft["id"], "outcome": outcome})
        if changed and outcome == "discarded":
            removed = mailbox.remove_if_untouched(mb, mailbox.drafts_folder(mb, account.delivery.drafts_folder),
                                                  draft["outgoing_message_id"], draft["delivered_sha256"])
            operations.select(mb, sent, readonly=True)
            log.info("draft %d: the person replied otherwise; the untouched draft was %s", draft["id"],
                     "removed from Drafts" if removed else "left in Drafts (no UIDPLUS)")
        elif changed:
            log.info("draft %d: outcome %s%s", draft["id"], outcome,
                     f" (similarity {score:.2f})" if score is not None else "")
        return bool(changed)


def _uids_since(mb: Any, since: datetime) -> list[int]:
    typ, data = mb.client.uid("SEARCH", "SINCE", since.strftime("%d-%b-%Y"))
    if typ != "OK":
        raise imaplib.IMAP4.error("UID SEARCH SINCE failed")
    return sorted({int(u) for u in (data[0] or b"").split()})


def _uidnext(mb: Any) -> int:
    values = mb.client.untagged_responses.get("UIDNEXT") or [b"1"]
    return int(values[-1])
