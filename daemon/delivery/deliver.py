"""The deliverer: approved drafts become threaded replies in Drafts, or are sent, exactly once.

It runs as a thread of ``mailsense run``. It LISTENs on ``mailsense_drafts`` (a status change
wakes it at once) and polls every few seconds as well, so a missed notification only delays.

Exactly once, per mode:

- ``drafts_folder``: the Message-ID is committed before the APPEND (``daemon.delivery.store``).
  An attempt that follows an interrupted one searches Drafts and Sent for that Message-ID and
  only appends when it is in neither. A crash after the APPEND and before the status update
  therefore finds the copy instead of adding a second one.
- ``smtp``: SMTP cannot be asked what it received, so the phase is recorded before DATA. An
  attempt interrupted before DATA is simply retried (the server drops an unfinished
  transaction). One interrupted after DATA began is looked for in Sent (our own copy, appended
  right after the server accepts, or the server's); when it is not there the draft is *held*
  (``delivery_phase = 'held'``) with the reason, never sent again blindly: at most once. A
  person releases it with ``UPDATE drafts SET delivery_phase = NULL WHERE id = …``.

Outages of the IMAP or SMTP server are retried with exponential backoff per account and logged
once (then as a reminder), never as a traceback per attempt.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg
from imap_tools import BaseMailBox

from daemon.config import AccountSettings, Settings
from daemon.delivery import mailbox, store
from daemon.delivery.outcome import OutcomeWatcher
from daemon.delivery.reply import Identity, Reply, build_reply, new_message_id
from daemon.delivery.smtp import NotSent, Refused, Submission
from daemon.errors import describe_error
from daemon.imap import connection
from daemon.ingest.backoff import Backoff, OutageLog
from daemon.mail.mime import content_sha256, parse_message

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # the fallback when no notification comes; also how fast a stop is noticed


class Hold(Exception):
    """A person has to look at this draft: it is not retried by itself."""


class Retry(Exception):
    """A passing failure (server down, 4xx); ``phase`` is 'smtp_data' when the message may be out."""

    def __init__(self, kind: str, detail: str, phase: str | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.phase = kind, detail, phase


def identity_of(account: AccountSettings, settings: Settings) -> Identity:
    """The From of replies and every address that is ours; ValueError naming the key when there is none."""
    address = account.delivery.from_address or (account.user if "@" in account.user else "")
    if not address:
        raise ValueError(f"accounts.{account.name}.delivery.from_address: set the address replies are sent from "
                         "(the login is not an address)")
    own = {address, account.user, *account.drafts.own_addresses, *settings.drafts.own_addresses}
    return Identity(address=address, name=account.delivery.from_name,
                    own_addresses=frozenset(a.strip().lower() for a in own if "@" in a))


@dataclass
class AccountState:
    account: AccountSettings
    identity: Identity
    backoff: Backoff = field(default_factory=lambda: Backoff(base=2.0, cap=300.0))
    outage: OutageLog | None = None


class Deliverer:
    """Claims approved drafts of the configured accounts and delivers them; ``run`` until ``stop`` is set."""

    def __init__(self, settings: Settings, db_url: str, stop: threading.Event) -> None:
        self.settings = settings
        self.db_url = db_url
        self.stop = stop
        self.accounts: dict[str, AccountState] = {}
        for account in settings.accounts:
            try:
                identity = identity_of(account, settings)
            except ValueError as exc:
                log.warning("delivery is off for account %s: %s", account.name, exc)
                continue
            self.accounts[account.name] = AccountState(
                account, identity, outage=OutageLog(log, f"delivery for account {account.name}"))
        self.outcomes = OutcomeWatcher([s.account for s in self.accounts.values()], stop)

    def announce(self) -> None:
        for state in self.accounts.values():
            d = state.account.delivery
            if d.auto_send:
                log.warning("account %s: auto_send is ON: pending drafts with confidence >= %.2f are %s "
                            "without a person's approval", state.account.name, d.auto_send_threshold,
                            "sent" if d.mode == "smtp" else "put into Drafts")

    def run(self) -> None:
        """The thread's body: deliver, check outcomes, wait for a notification or the poll interval."""
        self.announce()
        backoff, outage = Backoff(base=1.0, cap=60.0), OutageLog(log, "delivery: database")
        failures = OutageLog(log, "delivery: unexpected error")
        conn: psycopg.Connection[dict[str, Any]] | None = None
        while not self.stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = store.connect(self.db_url)
                    outage.recovered()
                self._auto_approve(conn)
                self.deliver_due(conn)
                self.outcomes.check_due(conn)
                failures.recovered()
                backoff.reset()
                for _ in conn.notifies(timeout=POLL_SECONDS, stop_after=1):
                    pass
            except psycopg.Error as exc:
                delay = backoff.next_delay()
                outage.failed(type(exc).__name__, describe_error(exc), delay)
                if conn is not None:
                    conn.close()
                conn = None
                self.stop.wait(delay)
            except Exception as exc:  # anything unforeseen: logged like an outage, never a thread that dies
                delay = backoff.next_delay()
                failures.failed(type(exc).__name__, describe_error(exc), delay)
                self.stop.wait(delay)
        if conn is not None:
            conn.close()
        log.info("delivery stopped")

    def _new_message_id(self, account: str) -> str:
        return new_message_id(self.accounts[account].identity.address)

    def _auto_approve(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        for name, state in self.accounts.items():
            d = state.account.delivery
            if d.auto_send:
                for draft_id in store.auto_approve(conn, name, d.auto_send_threshold):
                    log.warning("draft %d approved by auto_send (account %s)", draft_id, name)

    def deliver_due(self, conn: psycopg.Connection[dict[str, Any]]) -> int:
        """Deliver every due approved draft; return how many were delivered."""
        done = 0
        names = list(self.accounts)
        while not self.stop.is_set() and names:
            claim = store.claim_next(conn, names, self._new_message_id)
            if claim is None:
                return done
            try:
                done += self._deliver(conn, claim)
            finally:
                if not conn.closed:
                    store.release(conn, claim.id)
        return done

    def _deliver(self, conn: psycopg.Connection[dict[str, Any]], claim: store.Claim) -> int:
        state = self.accounts[claim.account]
        try:
            if state.account.delivery.mode == "smtp":
                self._by_smtp(conn, claim, state)
            else:
                self._to_drafts(conn, claim, state)
        except Hold as exc:
            log.error("draft %d is held for a person: %s", claim.id, exc)
            store.hold(conn, claim.id, str(exc))
            return 0
        except Retry as exc:
            delay = state.backoff.next_delay()
            assert state.outage is not None
            state.outage.failed(exc.kind, f"draft {claim.id}: {exc.detail}", delay)
            store.failed(conn, claim.id, exc.detail, delay, exc.phase)
            return 0
        assert state.outage is not None
        state.outage.recovered()
        state.backoff.reset()
        return 1

    # -- drafts folder ---------------------------------------------------------------------------

    def _to_drafts(self, conn: psycopg.Connection[dict[str, Any]], claim: store.Claim, state: AccountState) -> None:
        d = state.account.delivery
        mb = self._imap(state)
        try:
            drafts = mailbox.drafts_folder(mb, d.drafts_folder)
            if claim.earlier_phase is not None and self._already_there(conn, mb, claim, state, drafts):
                return
            reply = self._build(claim, state)
            mailbox.append(mb, drafts, reply.raw, "\\Draft \\Seen")
        except connection.CONNECTION_ERRORS as exc:
            raise Retry("imap", f"IMAP: {describe_error(exc)}") from None
        finally:
            connection.close(mb)
        if not store.delivered(conn, claim.id, status="delivered", via="drafts_folder",
                               sha256=content_sha256(reply.raw)):
            log.warning("draft %d was changed while its reply went into %s; the reply is there", claim.id, drafts)
        log.info("draft %d delivered to %s of account %s as %s", claim.id, drafts, claim.account,
                 claim.outgoing_message_id)

    def _already_there(self, conn: psycopg.Connection[dict[str, Any]], mb: BaseMailBox, claim: store.Claim,
                       state: AccountState, drafts: str) -> bool:
        """After an interrupted attempt: is the reply in Drafts (or already sent)? Then record that."""
        for folder in (drafts, mailbox.sent_folder(mb, state.account.delivery.sent_folder)):
            uids = mailbox.find_message_id(mb, folder, claim.outgoing_message_id)
            if uids:
                raw = connection.fetch_raw(mb, uids[:1]).get(uids[0])
                sha = content_sha256(raw) if raw is not None and folder == drafts else None
                store.delivered(conn, claim.id, status="delivered", via="drafts_folder", sha256=sha)
                log.info("draft %d: its reply %s was already in %s (an earlier attempt was interrupted); "
                         "not delivered again", claim.id, claim.outgoing_message_id, folder)
                return True
        return False

    # -- smtp ------------------------------------------------------------------------------------

    def _by_smtp(self, conn: psycopg.Connection[dict[str, Any]], claim: store.Claim, state: AccountState) -> None:
        d = state.account.delivery
        if claim.earlier_phase == "smtp_data":
            self._settle_unknown_send(conn, claim, state)
            return
        reply = self._build(claim, state)
        try:
            with Submission(state.account) as submission:
                submission.prepare(state.identity.address, reply.to + reply.cc)
                store.smtp_data_begins(conn, claim.id)
                try:
                    submission.send(reply.raw)
                except (Refused, NotSent):
                    raise
                except (smtplib.SMTPException, OSError) as exc:
                    raise Retry("smtp", f"SMTP connection lost during DATA: {describe_error(exc)}",
                                phase="smtp_data") from None
        except Refused as exc:
            raise Hold(f"the SMTP server refused the reply: {exc}") from None
        except NotSent as exc:
            raise Retry("smtp", str(exc)) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise Retry("smtp", f"SMTP: {describe_error(exc)}") from None
        note = self._copy_to_sent(state, reply.raw) if d.append_to_sent else None
        store.delivered(conn, claim.id, status="sent", via="smtp", sha256=content_sha256(reply.raw), note=note)
        log.info("draft %d sent via %s for account %s as %s", claim.id, d.smtp_host, claim.account,
                 claim.outgoing_message_id)

    def _copy_to_sent(self, state: AccountState, raw: bytes) -> str | None:
        """APPEND the sent reply to Sent; a failure is noted on the draft, the reply is out regardless."""
        try:
            mb = self._imap(state)
            try:
                mailbox.append(mb, mailbox.sent_folder(mb, state.account.delivery.sent_folder), raw, "\\Seen")
            finally:
                connection.close(mb)
        except Retry as exc:
            detail = exc.detail
        except connection.CONNECTION_ERRORS as exc:
            detail = describe_error(exc)
        else:
            return None
        log.warning("account %s: a reply was sent but its copy to Sent failed: %s", state.account.name, detail)
        return f"sent; the copy to Sent failed: {detail}"

    def _settle_unknown_send(self, conn: psycopg.Connection[dict[str, Any]], claim: store.Claim,
                             state: AccountState) -> None:
        """An attempt stopped after DATA began: sent if Sent has it, else held. Never sent twice."""
        try:
            mb = self._imap(state)
            try:
                sent = mailbox.sent_folder(mb, state.account.delivery.sent_folder)
                found = mailbox.find_message_id(mb, sent, claim.outgoing_message_id)
            finally:
                connection.close(mb)
        except connection.CONNECTION_ERRORS as exc:
            raise Retry("imap", f"IMAP (looking in Sent for an interrupted send): {describe_error(exc)}",
                        phase="smtp_data") from None
        if found:
            store.delivered(conn, claim.id, status="sent", via="smtp", sha256=None)
            log.info("draft %d: its interrupted send went out (found in %s); not sent again", claim.id, sent)
            return
        raise Hold(
            f"an attempt was interrupted while the SMTP server received the reply {claim.outgoing_message_id}, "
            f"and it is not in {sent}: whether it went out is unknown, so it is not sent again. To send it: "
            f"UPDATE drafts SET delivery_phase = NULL WHERE id = {claim.id}"
        )

    # -- shared ----------------------------------------------------------------------------------

    def _imap(self, state: AccountState) -> BaseMailBox:
        try:
            return connection.connect(state.account)
        except connection.AuthenticationFailed as exc:
            raise Retry("auth", str(exc)) from None
        except connection.CONNECTION_ERRORS as exc:
            raise Retry("imap", f"IMAP: {describe_error(exc)}") from None

    def _build(self, claim: store.Claim, state: AccountState) -> Reply:
        if not claim.text.strip():
            raise Hold("the approved draft has no text")
        try:
            return build_reply(parse_message(claim.original_raw), claim.text, state.identity,
                               claim.outgoing_message_id, reply_all=state.account.delivery.reply_all)
        except ValueError as exc:
            raise Hold(f"no reply can be built: {exc}") from None
