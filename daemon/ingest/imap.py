"""Folder watchers: one IMAP connection per watched folder, kept in a worker thread.

IDLE only makes new mail arrive sooner; the source of truth is the catch-up that runs after
every (re)connect, every IDLE wake-up and every IDLE renewal: ``UID SEARCH UID last+1:*``,
then ``BODY.PEEK[]`` (the mailbox is never modified by ingestion; the folder is EXAMINEd).
Each message is committed together with the checkpoint, so a crash re-fetches at most the
messages that were not yet committed, and the unique keys make the re-fetch harmless.

Where a folder starts (``[accounts] start_from``) is decided once, on its first connect, and
recorded in ``folders.start_uid``/``start_from``/``started_at``; see ``FolderWatcher.catch_up``.
Pointing Mailsense at a mailbox with years of mail must not classify, file and draft all of it.
"""

from __future__ import annotations

import imaplib
import io
import logging
import re
import select
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone

from imap_tools import BaseMailBox
from sqlalchemy import func, update
from sqlalchemy.orm import Session

from daemon.config import AccountSettings
from daemon.db.session import Database
from daemon.db.tables import Folder
from daemon.errors import describe_error
from daemon.imap import connection
from daemon.ingest.backoff import Backoff, OutageLog
from daemon.ingest.store import (
    Stored,
    advance_checkpoint,
    ensure_folder,
    store_imap_message,
    store_oversized_imap_message,
)
from daemon.metrics import IMAP_CONNECTED, IMAP_ERRORS, MESSAGES_STORED
from daemon.pipeline.stage import FIRST_STAGE

log = logging.getLogger(__name__)

_ACTIVITY = (b"EXISTS", b"RECENT", b"EXPUNGE", b"FETCH")

# How a folder's start point is recorded in folders.start_from: for a person (``mailsense status``)
# and read back by StartPoint.of, so a reconnect never needs the configuration to know it.
START_NEW = "new mail only"
START_ALL = "all mail"
START_BEFORE_RECORDING = "all mail (ingested before start points were recorded)"
_START_SINCE = re.compile(r"^since (\d{4})-(\d{2})-(\d{2})")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UIDNEXT = re.compile(rb"UIDNEXT (\d+)")
_INTERNALDATE = re.compile(rb'INTERNALDATE " ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([-+])(\d\d)(\d\d)"')


class ServerSaidBye(Exception):
    pass


@dataclass(frozen=True)
class StartPoint:
    """A folder's recorded start point, as the catch-up applies it.

    UIDs above ``uid`` are always ingested. At or below it lies mail that was in the folder before
    Mailsense; of that, only what ``since`` admits (``UID SEARCH SINCE``, INTERNALDATE by date) is
    looked at, and of that, with ``not_before``, only known messages and those that arrived at or
    after that instant are stored. Neither set: everything (``"all"``).
    """

    uid: int
    since: date | None = None
    not_before: datetime | None = None

    @property
    def filters(self) -> bool:
        return self.since is not None

    @classmethod
    def of(cls, folder: Folder) -> StartPoint:
        uid = folder.start_uid or 0
        recorded = folder.start_from or ""
        if match := _START_SINCE.match(recorded):
            return cls(uid, since=date(*map(int, match.groups())))
        if recorded == START_NEW and folder.started_at is not None:
            # Only reached after a UIDVALIDITY reset (on the first connect last_uid == start_uid). The
            # day before is searched so that no server time zone hides mail from the start day; the
            # exact instant then decides which unknown messages count as new.
            return cls(uid, since=(folder.started_at - timedelta(days=1)).date(), not_before=folder.started_at)
        return cls(uid)


def imap_date(day: date) -> str:
    """A date as IMAP SEARCH wants it (``2-Dec-2026``), whatever the locale."""
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def uid_next(mailbox: BaseMailBox, folder: str) -> int:
    """The folder's UIDNEXT: every message there now has a smaller UID, every later arrival a larger one."""
    typ, data = mailbox.client.status(connection.encode_folder(folder), "(UIDNEXT)")
    match = _UIDNEXT.search(data[0] or b"") if typ == "OK" and data and isinstance(data[0], bytes) else None
    if match is None:
        raise imaplib.IMAP4.error(f"STATUS (UIDNEXT) failed for folder {folder!r}: {typ} {data!r}"[:300])
    return int(match.group(1))


def search_since(mailbox: BaseMailBox, since: date, first: int, last: int) -> set[int]:
    """UIDs in ``first..last`` whose INTERNALDATE falls on ``since`` or later (by date, as IMAP compares)."""
    typ, data = mailbox.client.uid("SEARCH", f"UID {first}:{last} SINCE {imap_date(since)}")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID SEARCH SINCE failed: {typ}")
    return {u for u in map(int, (data[0] or b"").split()) if first <= u <= last}


def internal_dates(mailbox: BaseMailBox, uids: list[int]) -> dict[int, datetime]:
    """INTERNALDATE (when the server received the message) by UID."""
    found: dict[int, datetime] = {}
    for uid, when in connection.fetch_attribute(mailbox, uids, "INTERNALDATE", _INTERNALDATE).items():
        day, month, year, hh, mm, ss, sign, zh, zm = (g.decode("ascii") for g in when.groups())
        offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == "-" else 1)
        found[uid] = datetime(
            int(year), _MONTHS.index(month.title()) + 1, int(day), int(hh), int(mm), int(ss),
            tzinfo=timezone(offset),
        )
    return found


def _mail_announced(mailbox: BaseMailBox) -> bool:
    """Whether the server announced new mail (untagged EXISTS/RECENT) since the last call.

    imaplib files untagged responses that arrive with other commands' answers away in
    ``untagged_responses``; without this check such an announcement would wait for the next IDLE
    renewal (minutes) instead of triggering a catch-up now.
    """
    responses = mailbox.client.untagged_responses
    return bool(responses.pop("EXISTS", None)) | bool(responses.pop("RECENT", None))


def _already_received(client: imaplib.IMAP4) -> bool:
    """Whether bytes from the server wait on our side of the socket, where ``select`` cannot see them.

    imaplib reads lines through a buffered file: when the server sends "+ idling" and "* 5 EXISTS"
    in one packet (or "* OK Still here" and an EXISTS), reading the first line leaves the second
    in that buffer, and ``select`` on the socket would wait for the next packet (the IDLE renewal,
    minutes later). A TLS socket can also hold decrypted bytes (``pending``).

    ``peek`` returns the buffer without touching the socket when it holds anything; when empty it
    reads once, which must not block: the socket is made non-blocking for that read, so it gives
    nothing (plain) or raises ``SSLWantReadError`` (TLS) when no data has come. Whatever it does
    read stays in the buffer for the next ``readline``, so no line is lost.
    """
    sock, file = client.sock, client.file
    if isinstance(sock, ssl.SSLSocket) and sock.pending() > 0:
        return True
    if not isinstance(file, io.BufferedReader):
        return False
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return bool(file.peek(1))
    except ssl.SSLWantReadError:
        return False
    finally:
        sock.settimeout(timeout)


@dataclass(frozen=True)
class _Oversized:
    """A message over ``max_message_bytes``: its header block and its real size."""

    headers: bytes
    size: int


class FolderWatcher:
    """Keeps one folder of one account ingested until ``stop`` is set."""

    def __init__(
        self,
        account: AccountSettings,
        folder_name: str,
        db: Database,
        stop: threading.Event,
        on_stored: Callable[[], None] = lambda: None,
        instance: str = "",
    ) -> None:
        self.account = account
        self.folder_name = folder_name
        self.db = db
        self.stop = stop
        self.on_stored = on_stored
        self.instance = instance
        self.what = f"account {account.name} folder {folder_name}"
        self.outage = OutageLog(log, self.what)
        self.backoff = Backoff(base=1.0, cap=300.0)
        self.folder_id: int | None = None
        self._start_noted = False

    # -- the outer loop: connect, work, back off -------------------------------------------
    def run(self) -> None:
        while not self.stop.is_set():
            mailbox: BaseMailBox | None = None
            try:
                mailbox = connection.connect(self.account)
                self._set_connected(True, None)
                self.outage.recovered()
                self.backoff.reset()
                self._work(mailbox)
            except connection.AuthenticationFailed as exc:
                self._failed("auth", str(exc), min_delay=30.0)
            except ServerSaidBye as exc:
                self._failed("bye", f"server closed the connection ({exc})")
            except ssl.SSLCertVerificationError as exc:
                self._failed("tls", f"TLS certificate not trusted: {exc.verify_message}; set ca_file or fix the "
                             "server certificate", min_delay=30.0)
            except connection.CONNECTION_ERRORS as exc:
                self._failed("connection", describe_error(exc))
            except Exception as exc:  # a database outage or a bug: never let it kill the watcher
                self._failed("other", describe_error(exc))
            finally:
                if mailbox is not None:
                    connection.close(mailbox)
                IMAP_CONNECTED.labels(self.account.name, self.folder_name).set(0)
                self._set_connected(False, None, quiet=True)

    def _failed(self, kind: str, detail: str, min_delay: float = 0.0) -> None:
        IMAP_ERRORS.labels(self.account.name, kind).inc()
        delay = max(min_delay, self.backoff.next_delay())
        self.outage.failed(kind, detail, delay)
        self._set_connected(False, detail, quiet=True)
        self.stop.wait(delay)

    def _set_connected(self, connected: bool, error: str | None, quiet: bool = False) -> None:
        try:
            with self.db.session() as session, session.begin():
                folder = ensure_folder(session, self.account.name, self.folder_name)
                self.folder_id = folder.id
                values: dict[str, object] = {"connected": connected, "connected_by": self.instance}
                if error is not None:
                    values.update(last_error=error[:500], last_error_at=func.now())
                elif connected:
                    values.update(last_error=None)
                session.execute(update(Folder).where(Folder.id == folder.id).values(**values))
        except Exception:
            if not quiet:
                raise

    # -- one connection's life -----------------------------------------------------------------
    def _work(self, mailbox: BaseMailBox) -> None:
        mailbox.folder.set(self.folder_name, readonly=True)
        IMAP_CONNECTED.labels(self.account.name, self.folder_name).set(1)
        log.info("%s: connected (%s)", self.what, "IDLE" if self._use_idle(mailbox) else "polling")
        _mail_announced(mailbox)  # what EXAMINE reported is covered by the catch-up below
        self.catch_up(mailbox)
        while not self.stop.is_set():
            if self._use_idle(mailbox):
                if _mail_announced(mailbox):
                    # New mail was announced while we caught up (Dovecot answers UID SEARCH from its
                    # current view and reports the new EXISTS after it); IDLE would not report it again.
                    self.catch_up(mailbox)
                    continue
                self._idle(mailbox)
            else:
                self.stop.wait(self.account.poll_seconds)
                if self.stop.is_set():
                    return
                typ, _ = mailbox.client.noop()
                if typ != "OK":
                    raise imaplib.IMAP4.abort(f"NOOP answered {typ}")
            self.catch_up(mailbox)

    def _use_idle(self, mailbox: BaseMailBox) -> bool:
        return self.account.idle and connection.has_capability(mailbox, "IDLE")

    def _idle(self, mailbox: BaseMailBox) -> None:
        """IDLE until something happens, the renewal time passes or we are told to stop."""
        client = mailbox.client
        tag = client._command("IDLE")
        while (response := client._get_response()) is not None:
            if response.startswith(tag):
                raise imaplib.IMAP4.error(f"IDLE refused: {response[:200]!r}")
        if _mail_announced(mailbox):  # an EXISTS that arrived before the server's "+ idling"
            self._end_idle(mailbox, tag)
            return
        deadline = time.monotonic() + self.account.idle_renew_seconds
        while not self.stop.is_set() and time.monotonic() < deadline:
            if not _already_received(client):
                readable, _, _ = select.select([client.sock], [], [], 1.0)
                if not readable:
                    continue
            line = client._get_line()
            if line.startswith(b"* BYE"):
                raise ServerSaidBye(line[6:].decode("ascii", "replace")[:200])
            if any(word in line for word in _ACTIVITY):
                break
        # Only a healthy connection gets here; a broken one raised above and is simply dropped.
        self._end_idle(mailbox, tag)

    def _end_idle(self, mailbox: BaseMailBox, tag: bytes) -> None:
        client = mailbox.client
        client.send(b"DONE\r\n")
        while True:
            line = client._get_line()
            if line.startswith(tag):
                return
            if line.startswith(b"* BYE"):
                raise ServerSaidBye(line[6:].decode("ascii", "replace")[:200])

    # -- the source of truth ---------------------------------------------------------------------
    def catch_up(self, mailbox: BaseMailBox) -> int:
        """Store every message above the checkpoint; return how many were new.

        The first connect to a folder records its start point (``_record_start``) in the same
        transaction that sets its UIDVALIDITY; after that the start point is only read, never
        chosen again: a reconnect, a restart or a changed ``start_from`` catches up from
        ``last_uid`` exactly as before.

        Mail at or below ``start_uid`` was there before Mailsense. Under ``"new"`` the checkpoint
        simply starts at ``start_uid``. Under a window it starts at 0 and, while it is below
        ``start_uid``, only the UIDs ``UID SEARCH SINCE <recorded date>`` returns are fetched
        (old mail copied in with a high UID stays out too); once they are stored the checkpoint
        jumps to ``start_uid``. A crash half-way resumes with the same search, because the date
        is read back from ``start_from``, not recomputed from today.

        A UIDVALIDITY change makes every UID meaningless, so the folder is rescanned from UID 1
        and known messages are matched by content (Message-ID included) and relocated, not
        processed again, as without a start point. Applying the window to today's date then
        would be wrong (it would pull in mail that was left out or drop mail that arrived
        since), and rescanning without a filter would store every pre-start message as new. So
        the recorded start point is re-based instead: ``start_uid`` becomes the new UIDNEXT-1
        and, at or below it, only mail the recorded start admits is looked at: the same SINCE
        date for a window; for ``"new"``, known messages plus mail that arrived at or after
        ``started_at`` (its INTERNALDATE), i.e. mail that came in while we were not looking.
        An old message a person moved into the folder after the start and that was never
        stored is the one case this cannot tell from pre-start mail; it is left out.
        """
        uidvalidity, modseq = self._folder_status(mailbox)
        with self.db.session() as session, session.begin():
            folder = self._locked_folder(session)
            if folder.start_from is None:
                self._record_start(mailbox, folder)
            else:
                self._note_changed_setting(folder)
            if folder.uidvalidity is not None and folder.uidvalidity != uidvalidity:
                log.warning(
                    "%s: UIDVALIDITY changed from %s to %s; rescanning (known messages are matched, "
                    "not processed again; start point: %s)", self.what, folder.uidvalidity, uidvalidity,
                    folder.start_from,
                )
                folder.last_uid = 0
                if StartPoint.of(folder).filters:
                    folder.start_uid = uid_next(mailbox, self.folder_name) - 1
            folder.uidvalidity = uidvalidity
            if modseq is not None:
                folder.highest_modseq = modseq
            last_uid = folder.last_uid
            start = StartPoint.of(folder)
        uids = connection.search_uids_above(mailbox, last_uid)
        check_dates: set[int] = set()
        left_out = 0  # mail from before the start point: not fetched, or (not_before) fetched and not stored
        windowed = start.filters and last_uid < start.uid
        if windowed:
            assert start.since is not None
            admitted = search_since(mailbox, start.since, last_uid + 1, start.uid)
            left_out = len(uids)
            uids = [u for u in uids if u > start.uid or u in admitted]
            left_out -= len(uids)
            if start.not_before is not None:
                check_dates = admitted
        new = skipped = 0
        complete = True
        for first in range(0, len(uids), self.account.fetch_batch):
            if self.stop.is_set():
                complete = False
                break
            chunk = uids[first : first + self.account.fetch_batch]
            fetched = self._fetch_bounded(mailbox, chunk)
            dates = internal_dates(mailbox, [u for u in chunk if u in check_dates])
            for uid in chunk:
                raw = fetched.get(uid)
                if raw is None:  # expunged between SEARCH and FETCH
                    continue
                insert = uid not in check_dates or (
                    uid in dates and start.not_before is not None and dates[uid] >= start.not_before
                )
                if isinstance(raw, _Oversized):
                    result = self._store_oversized(folder, uidvalidity, uid, raw) if insert else Stored.skipped
                else:
                    result = self._store(folder, uidvalidity, uid, raw, insert)
                MESSAGES_STORED.labels(self.account.name, "imap", result.value).inc()
                if result is Stored.inserted:
                    new += 1
                elif result is Stored.skipped:
                    skipped += 1
            if new:
                self.on_stored()
        if windowed and complete:
            with self.db.session() as session:
                advance_checkpoint(session, folder.id, start.uid)
        left_out += skipped
        if uids or left_out:
            log.info("%s: %d new message(s) stored, %d already known%s", self.what, new, len(uids) - new - skipped,
                     f", {left_out} from before the start point left out" if left_out else "")
        return new

    def _locked_folder(self, session: Session) -> Folder:
        """The folder row, locked: two daemons connecting at once must not both choose a start point."""
        folder = ensure_folder(session, self.account.name, self.folder_name)
        session.refresh(folder, with_for_update=True)
        return folder

    def _record_start(self, mailbox: BaseMailBox, folder: Folder) -> None:
        """Choose and record where this folder starts; runs once per folder, on its first connect.

        ``"new"``: the checkpoint starts at UIDNEXT-1, so only mail arriving from now on is
        ingested. ``"7d"``: mail whose INTERNALDATE is within 7 days (by date: ``SEARCH SINCE``)
        plus everything new. ``"all"``: everything. A folder that was ingested before start
        points existed keeps what it did then: everything.
        """
        if folder.uidvalidity is not None:  # connected by an earlier Mailsense: it took everything
            folder.start_uid, folder.start_from = 0, START_BEFORE_RECORDING
            return
        now = datetime.now(UTC).replace(microsecond=0)  # INTERNALDATE has whole seconds
        days = self.account.start_window_days
        if self.account.start_from == "all":
            folder.start_uid, folder.start_from = 0, START_ALL
        else:
            folder.start_uid = uid_next(mailbox, self.folder_name) - 1
            if days is None:
                folder.start_from = START_NEW
                folder.last_uid = max(folder.last_uid or 0, folder.start_uid)
            else:
                folder.start_from = f"since {(now - timedelta(days=days)).date():%Y-%m-%d} ({days}d)"
        folder.started_at = now
        log.info("%s: first connect; starting from %s (%d message UID(s) were already there)",
                 self.what, folder.start_from, folder.start_uid)

    def _note_changed_setting(self, folder: Folder) -> None:
        """Say once why a changed ``start_from`` does nothing here: it only applies to a first connect."""
        if self._start_noted:
            return
        self._start_noted = True
        configured, recorded = self.account.start_from, folder.start_from or ""
        same = {"new": recorded == START_NEW, "all": recorded == START_ALL}.get(
            configured, recorded.endswith(f"({configured})")
        )
        if not same:
            log.info("%s: start_from = %r only applies to a folder's first connect; this folder started from %s "
                     "on %s and keeps that", self.what, configured, recorded,
                     f"{folder.started_at:%Y-%m-%d %H:%M}" if folder.started_at else "an earlier version")

    def _fetch_bounded(self, mailbox: BaseMailBox, uids: list[int]) -> dict[int, bytes | _Oversized]:
        """Bodies of ``uids``, at most ``fetch_batch_bytes`` per round trip; too large ones by their headers.

        Sizes are asked first, so memory holds one round trip's worth of mail, not ``fetch_batch``
        times the largest attachment in the folder.
        """
        sizes = connection.fetch_sizes(mailbox, uids)
        limit, budget = self.account.max_message_bytes, self.account.fetch_batch_bytes
        result: dict[int, bytes | _Oversized] = {}
        oversized = [u for u in uids if sizes.get(u, 0) > limit]
        for uid, headers in connection.fetch_headers(mailbox, oversized).items():
            result[uid] = _Oversized(headers, sizes[uid])
        batch: list[int] = []
        batch_bytes = 0
        for uid in [u for u in uids if u not in oversized]:
            size = sizes.get(uid, 0)
            if batch and batch_bytes + size > budget:
                result.update(connection.fetch_raw(mailbox, batch))
                batch, batch_bytes = [], 0
            batch.append(uid)
            batch_bytes += size
        result.update(connection.fetch_raw(mailbox, batch))
        return result

    def _store_oversized(self, folder: Folder, uidvalidity: int, uid: int, oversized: _Oversized) -> Stored:
        log.warning("%s: UID %d is %.1f MiB, over max_message_bytes: stored by its headers and quarantined",
                    self.what, uid, oversized.size / 1048576)
        with self.db.session() as session:
            return store_oversized_imap_message(session, folder, uidvalidity, uid, oversized.headers, oversized.size,
                                                self.account.max_message_bytes, FIRST_STAGE)

    def _store(self, folder: Folder, uidvalidity: int, uid: int, raw: bytes, insert_unknown: bool = True) -> Stored:
        with self.db.session() as session:
            return store_imap_message(session, folder, uidvalidity, uid, raw, FIRST_STAGE, insert_unknown)

    def _folder_status(self, mailbox: BaseMailBox) -> tuple[int, int | None]:
        status = connection.folder_status(mailbox, self.folder_name)
        return status.uidvalidity, status.highest_modseq
