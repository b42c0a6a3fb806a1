"""Folder watchers: one IMAP connection per watched folder, kept in a worker thread.

IDLE only makes new mail arrive sooner; the source of truth is the catch-up that runs after
every (re)connect, every IDLE wake-up and every IDLE renewal: ``UID SEARCH UID last+1:*``,
then ``BODY.PEEK[]`` (the mailbox is never modified by ingestion; the folder is EXAMINEd).
Each message is committed together with the checkpoint, so a crash re-fetches at most the
messages that were not yet committed, and the unique keys make the re-fetch harmless.
"""

from __future__ import annotations

import imaplib
import logging
import select
import ssl
import threading
import time
from collections.abc import Callable

from imap_tools import BaseMailBox
from sqlalchemy import func, update

from daemon.config import AccountSettings
from daemon.db.session import Database
from daemon.db.tables import Folder
from daemon.errors import describe_error
from daemon.imap import connection
from daemon.ingest.backoff import Backoff, OutageLog
from daemon.ingest.store import Stored, ensure_folder, store_imap_message
from daemon.metrics import IMAP_CONNECTED, IMAP_ERRORS, MESSAGES_STORED
from daemon.pipeline.stage import FIRST_STAGE

log = logging.getLogger(__name__)

_ACTIVITY = (b"EXISTS", b"RECENT", b"EXPUNGE", b"FETCH")


class ServerSaidBye(Exception):
    pass


def _mail_announced(mailbox: BaseMailBox) -> bool:
    """Whether the server announced new mail (untagged EXISTS/RECENT) since the last call.

    imaplib files untagged responses that arrive with other commands' answers away in
    ``untagged_responses``; without this check such an announcement would wait for the next IDLE
    renewal (minutes) instead of triggering a catch-up now.
    """
    responses = mailbox.client.untagged_responses
    return bool(responses.pop("EXISTS", None)) | bool(responses.pop("RECENT", None))


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
        sock = client.sock
        while not self.stop.is_set() and time.monotonic() < deadline:
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending:
                readable, _, _ = select.select([sock], [], [], 1.0)
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
        """Store every message above the checkpoint; return how many were new."""
        uidvalidity, modseq = self._folder_status(mailbox)
        with self.db.session() as session, session.begin():
            folder = ensure_folder(session, self.account.name, self.folder_name)
            if folder.uidvalidity is not None and folder.uidvalidity != uidvalidity:
                log.warning(
                    "%s: UIDVALIDITY changed from %s to %s; rescanning (known messages are matched, "
                    "not processed again)", self.what, folder.uidvalidity, uidvalidity,
                )
                folder.last_uid = 0
            folder.uidvalidity = uidvalidity
            if modseq is not None:
                folder.highest_modseq = modseq
            last_uid = folder.last_uid
        uids = connection.search_uids_above(mailbox, last_uid)
        new = 0
        for start in range(0, len(uids), self.account.fetch_batch):
            if self.stop.is_set():
                break
            chunk = uids[start : start + self.account.fetch_batch]
            fetched = connection.fetch_raw(mailbox, chunk)
            for uid in chunk:
                raw = fetched.get(uid)
                if raw is None:  # expunged between SEARCH and FETCH
                    continue
                result = self._store(folder, uidvalidity, uid, raw)
                MESSAGES_STORED.labels(self.account.name, "imap", result.value).inc()
                if result is Stored.inserted:
                    new += 1
            if new:
                self.on_stored()
        if uids:
            log.info("%s: %d new message(s) stored, %d already known", self.what, new, len(uids) - new)
        return new

    def _store(self, folder: Folder, uidvalidity: int, uid: int, raw: bytes) -> Stored:
        with self.db.session() as session:
            return store_imap_message(session, folder, uidvalidity, uid, raw, FIRST_STAGE)

    def _folder_status(self, mailbox: BaseMailBox) -> tuple[int, int | None]:
        return connection.folder_status(mailbox, self.folder_name)
