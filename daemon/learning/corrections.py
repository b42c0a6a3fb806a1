"""Corrections: what the person does to their mail in their mail client, turned into labels.

One tracker per account looks at the mailbox every ``[accounts.learning] rescan_seconds``. A look
costs one STATUS per folder; only a folder whose UIDNEXT or HIGHESTMODSEQ moved is opened, and
then only its new UIDs (their Message-ID/From/To/References header lines) and, with CONDSTORE, the
flags that changed (``UID FETCH 1:* (FLAGS) (CHANGEDSINCE n)``; without it the flags of the newest
``FLAG_RESCAN_UIDS`` messages) are read.

A message is followed by where it *appears*, not by a COPY or a UID: clients that move by APPEND
and delete (mbsync) produce a new message in the target folder and nothing else. An arrival is
matched to a stored message by its location where the ingest already stored it, else by Message-ID
confirmed by the content hash of the bytes (two messages may share an ID). Then its kind of place
(Junk tree, Trash, other) is compared with where it was last seen (``learning_places``):

* other or Trash → Junk: spam (``user_move``), unless it is our own filing's move (``mail_actions``),
  which is noted once and is no label;
* Junk → other: ham (``user_move``), whatever the model's score was;
* anything → Trash, Trash → other: no label (people delete spam and ham alike).

``$Junk``/``$NotJunk`` set by a mail client are labels too (``client_keyword``), except the ones our
filing set. Implicit ham: a message the account replied to (a message From one of its own
addresses whose In-Reply-To/References name it, or ``\\Answered``), and, weighted lower, mail in a
kept folder from an address the account wrote to. Implicit labels never overrule a person's. Spam
our filing moved to Junk that nobody moved out within ``junk_grace_days`` is implicit spam
(``daemon/learning/left_in_junk.py``), recorded at the end of each complete look.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from imap_tools import BaseMailBox
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from daemon.config import AccountSettings, Settings
from daemon.db.session import Database
from daemon.errors import describe_error
from daemon.imap import connection
from daemon.imap.connection import FolderStatus
from daemon.ingest.backoff import Backoff, OutageLog
from daemon.ingest.store import ensure_account
from daemon.learning import folders as mailbox_folders
from daemon.learning.folders import FolderMap, Headers
from daemon.learning.labels import newest_labels, record_label
from daemon.learning.left_in_junk import SOURCE as LEFT_IN_JUNK
from daemon.learning.left_in_junk import record_left_in_junk
from daemon.learning.tracking import JUNK, OTHER, TRASH, LearningFolder
from daemon.mail.mime import content_hashes

log = logging.getLogger(__name__)

FLAG_RESCAN_UIDS = 500
"""Without CONDSTORE, the flags of this many of the newest UIDs per folder are read on each look."""
FETCH_BATCH = 200

# -- SQL, in one place ---------------------------------------------------------------------------

AT_LOCATION_SQL = text(
    """
    SELECT m.id FROM messages m JOIN folders f ON f.id = m.folder_id
     WHERE f.account_id = :account AND f.name = :folder AND m.uidvalidity = :uidvalidity AND m.uid = :uid
    UNION
    SELECT p.message_id FROM learning_places p JOIN messages m ON m.id = p.message_id
     WHERE m.account_id = :account AND p.folder = :folder AND p.uidvalidity = :uidvalidity AND p.uid = :uid
    """
)

BY_MESSAGE_ID_SQL = text(
    "SELECT id, content_sha256 FROM messages WHERE account_id = :account AND message_id = ANY(:ids)"
)

# Where a message was last seen, or, never seen by the tracker, where the rest of Mailsense knows it:
# our filing's move into a folder (the destination, '\\Junk' meaning the account's Junk), else the
# folder ingestion stored it from. filing_dest is set while our own move has not been seen yet.
PREVIOUS_SQL = text(
    """
    SELECT m.id, p.kind, p.folder, p.filing_seen, f.name AS ingested_folder,
           CASE WHEN a.status IN ('pending', 'done') THEN a.destination END AS filing_dest,
           a.keyword AS filing_keyword
      FROM messages m
      LEFT JOIN learning_places p ON p.message_id = m.id
      LEFT JOIN folders f ON f.id = m.folder_id
      LEFT JOIN mail_actions a ON a.message_id = m.id
     WHERE m.id = ANY(:ids)
    """
)

UPSERT_PLACE_SQL = text(
    """
    INSERT INTO learning_places (message_id, kind, folder, uidvalidity, uid, filing_seen, updated_at)
    VALUES (:message_id, :kind, :folder, :uidvalidity, :uid, :filing_seen, now())
    ON CONFLICT (message_id) DO UPDATE
       SET kind = EXCLUDED.kind, folder = EXCLUDED.folder, uidvalidity = EXCLUDED.uidvalidity,
           uid = EXCLUDED.uid, filing_seen = learning_places.filing_seen OR EXCLUDED.filing_seen,
           updated_at = now()
    """
)

CORRESPONDENT_SQL = text(
    """
    INSERT INTO learning_correspondents (account_id, address) VALUES (:account, :address)
    ON CONFLICT (account_id, address) DO UPDATE
       SET messages = learning_correspondents.messages + 1, last_at = now()
    """
)

KNOWN_CORRESPONDENTS_SQL = text(
    "SELECT address FROM learning_correspondents WHERE account_id = :account AND address = ANY(:addresses)"
)

INGEST_CHECKPOINT_SQL = text(
    """
    SELECT f.uidvalidity, f.last_uid FROM folders f JOIN accounts a ON a.id = f.account_id
     WHERE a.name = :account AND f.name = :folder
    """
)


def own_addresses(settings: Settings, account: AccountSettings) -> frozenset[str]:
    """The addresses the account writes from: its login when that is one, and the configured ones."""
    own = [*settings.drafts.own_addresses, *account.drafts.own_addresses]
    if "@" in account.user:
        own.append(account.user)
    return frozenset(a.strip().lower() for a in own if a.strip())


@dataclass
class _Previous:
    kind: str | None
    folder: str | None
    filing_unseen: bool  # our filing moved it into Junk and that arrival has not been seen yet
    filing_keyword: str | None
    from_filing: bool = False  # known only from our filing's move: once recorded, that move is accounted for


class CorrectionTracker:
    """Follows one account's mailbox and records the labels its changes mean."""

    def __init__(self, settings: Settings, account: AccountSettings, db: Database, stop: threading.Event) -> None:
        self.settings = settings
        self.account = account
        self.db = db
        self.stop = stop
        self.own = own_addresses(settings, account)
        self.what = f"account {account.name} (corrections)"
        self.outage = OutageLog(log, self.what)
        self.backoff = Backoff(base=1.0, cap=300.0)
        self.account_id: int | None = None
        self.labels: Counter[str] = Counter()
        self._folders: FolderMap | None = None

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Connect, bootstrap once if asked to, then look for corrections until stopped."""
        while not self.stop.is_set():
            mailbox: BaseMailBox | None = None
            try:
                mailbox = connection.connect(self.account)
                self.outage.recovered()
                self.backoff.reset()
                if self.account.learning.bootstrap:
                    from daemon.learning.bootstrap import bootstrap_once

                    bootstrap_once(self.account, self.db, mailbox, self.stop)
                while not self.stop.is_set():
                    if self.account.learning.watch_corrections:
                        self.check(mailbox)
                    self.stop.wait(self.account.learning.rescan_seconds)
                    if not self.stop.is_set() and mailbox.client.noop()[0] != "OK":
                        break
            except connection.AuthenticationFailed as exc:
                self._failed(str(exc), 30.0, quiet=True)
            except connection.CONNECTION_ERRORS as exc:
                self._failed(describe_error(exc), quiet=True)
            except Exception as exc:  # a database outage or a bug: logged, never the end of the thread
                self._failed(describe_error(exc))
            finally:
                if mailbox is not None:
                    connection.close(mailbox)

    def _failed(self, detail: str, min_delay: float = 0.0, quiet: bool = False) -> None:
        """Back off and retry. A server outage is the folder watchers' to report (once); here it is debug."""
        delay = max(min_delay, self.backoff.next_delay())
        if quiet:
            log.debug("%s: %s; retrying in %.0fs", self.what, detail, delay)
        else:
            self.outage.failed("error", detail, delay)
        self.stop.wait(delay)

    # -- one look at the mailbox ---------------------------------------------------------------
    def check(self, mailbox: BaseMailBox) -> Counter[str]:
        """Look at every folder once; return the labels recorded by source (also kept in ``self.labels``)."""
        before = self.labels.copy()
        if self.account_id is None:  # once: the account row never goes away while the daemon runs
            with self.db.session() as session, session.begin():
                self.account_id = ensure_account(session, self.account.name).id
        folder_map = mailbox_folders.read_folders(mailbox, self.account)
        self._folders = folder_map
        watched = set(self.account.folders) | set(folder_map.junk_tree) | folder_map.sent
        for name in folder_map.names:
            if self.stop.is_set():
                break
            if name in folder_map.drafts:
                continue
            if not self.account.learning.all_folders and name not in watched and folder_map.kind(name) != TRASH:
                continue
            self._check_folder(mailbox, folder_map, name)
        if not self.stop.is_set():  # a complete look: every rescue out of Junk so far is recorded
            self._left_in_junk()
        recorded = self.labels - before
        if recorded:
            log.info("%s: recorded %s", self.what, ", ".join(f"{n} {s}" for s, n in sorted(recorded.items())))
        return recorded

    def _check_folder(self, mailbox: BaseMailBox, folder_map: FolderMap, name: str) -> None:
        status = connection.folder_status(mailbox, name)
        assert self.account_id is not None
        with self.db.session() as session:
            state = session.get(LearningFolder, (self.account_id, name))
            known = (state.uidvalidity, state.uid_next, state.highest_modseq) if state is not None else None
        if known is None or known[0] != status.uidvalidity:
            # First look (or a new UIDVALIDITY): what is there now is the baseline, not a correction.
            self._save_state(name, status, status.uid_next, status.highest_modseq)
            return
        _, uid_next, modseq = known
        flags_changed = modseq is None or status.highest_modseq is None or status.highest_modseq > modseq
        if status.uid_next <= uid_next and not flags_changed:
            return
        mailbox_folders.examine(mailbox, name)
        kind = folder_map.kind(name)
        new_uid_next = uid_next
        if status.uid_next > uid_next:
            new_uid_next = self._arrivals(mailbox, name, kind, status, uid_next)
        if flags_changed and kind != TRASH:
            since = modseq if status.highest_modseq is not None else None
            self._flags(mailbox, name, kind, status, since)
        self._save_state(name, status, new_uid_next, status.highest_modseq)

    def _save_state(self, name: str, status: FolderStatus, uid_next: int, modseq: int | None) -> None:
        with self.db.session() as session, session.begin():
            session.execute(
                insert(LearningFolder)
                .values(account_id=self.account_id, name=name, uidvalidity=status.uidvalidity, uid_next=uid_next,
                        highest_modseq=modseq)
                .on_conflict_do_update(index_elements=["account_id", "name"],
                                       set_={"uidvalidity": status.uidvalidity, "uid_next": uid_next,
                                             "highest_modseq": modseq, "checked_at": text("now()")})
            )

    # -- new messages in a folder ---------------------------------------------------------------
    def _ingest_limit(self, name: str, uidvalidity: int) -> int | None:
        """In a folder the ingest watches, only UIDs it has stored are looked at (it may be behind us)."""
        if name not in self.account.folders:
            return None
        with self.db.session() as session:
            row = session.execute(INGEST_CHECKPOINT_SQL, {"account": self.account.name, "folder": name}).first()
        if row is None or row.uidvalidity != uidvalidity:
            return 0
        return int(row.last_uid)

    def _arrivals(self, mailbox: BaseMailBox, name: str, kind: str, status: FolderStatus, uid_next: int) -> int:
        """Handle UIDs from ``uid_next`` on; return the UIDNEXT to remember (below a lagging ingest)."""
        uids = connection.search_uids_above(mailbox, uid_next - 1)
        limit = self._ingest_limit(name, status.uidvalidity)
        remember = status.uid_next
        if limit is not None:
            later = [u for u in uids if u > limit]
            uids = [u for u in uids if u <= limit]
            if later:
                remember = later[0]
        for start in range(0, len(uids), FETCH_BATCH):
            chunk = uids[start : start + FETCH_BATCH]
            headers = mailbox_folders.fetch_headers(mailbox, chunk)
            for uid in chunk:
                if uid in headers:
                    self._arrival(mailbox, name, kind, status.uidvalidity, uid, headers[uid])
        return remember

    def _identify(self, mailbox: BaseMailBox, name: str, uidvalidity: int, uid: int, headers: Headers) -> int | None:
        """The stored message at this location: known there already, else same Message-ID and same bytes."""
        with self.db.session() as session:
            at = session.execute(AT_LOCATION_SQL, {"account": self.account_id, "folder": name,
                                                   "uidvalidity": uidvalidity, "uid": uid}).scalar()
            if at is not None:
                return int(at)
            if headers.message_id is None:
                return None
            candidates = session.execute(BY_MESSAGE_ID_SQL, {"account": self.account_id,
                                                             "ids": [headers.message_id]}).all()
        if not candidates:
            return None
        raw = connection.fetch_raw(mailbox, [uid]).get(uid)
        if raw is None:
            return None
        return next((int(c.id) for c in candidates if c.content_sha256 in content_hashes(raw)), None)

    def _arrival(self, mailbox: BaseMailBox, name: str, kind: str, uidvalidity: int, uid: int,
                 headers: Headers) -> None:
        own_mail = headers.from_addr in self.own
        if own_mail and self.account.learning.implicit_labels:
            self._replied(headers)
        message = self._identify(mailbox, name, uidvalidity, uid, headers)
        if message is None:
            return
        with self.db.session() as session, session.begin():
            previous = self._previous(session, message)
            filing_seen = previous.from_filing
            if kind == JUNK and previous.kind != JUNK:
                if previous.filing_unseen:
                    filing_seen = True  # our own filing's move: no label
                else:
                    self._label(session, message, "spam", "user_move",
                                f"moved from {previous.folder or 'another folder'} to {name}")
            elif kind == OTHER and previous.kind == JUNK:
                self._label(session, message, "ham", "user_move", f"moved from {previous.folder} to {name}")
            elif (kind == OTHER and not own_mail and self.account.learning.implicit_labels
                  and self._folders is not None and self._folders.kept(name)):
                self._sender_evidence(session, message, headers)
            session.execute(UPSERT_PLACE_SQL, {"message_id": message, "kind": kind, "folder": name,
                                               "uidvalidity": uidvalidity, "uid": uid, "filing_seen": filing_seen})

    def _previous(self, session: Session, message: int) -> _Previous:
        row = session.execute(PREVIOUS_SQL, {"ids": [message]}).one()
        filing_kind = None
        if row.filing_dest:
            filing_kind = JUNK if row.filing_dest == "\\Junk" else self._kind(row.filing_dest)
        if row.kind is not None:
            unseen = filing_kind == JUNK and not row.filing_seen and row.kind != JUNK
            return _Previous(row.kind, row.folder, unseen, row.filing_keyword)
        if filing_kind == JUNK:  # never seen by us, but our filing put it into Junk: that is where it was
            junk = self._folders.junk if self._folders is not None else "Junk"
            return _Previous(JUNK, junk if row.filing_dest == "\\Junk" else row.filing_dest, False,
                             row.filing_keyword, from_filing=True)
        folder = row.ingested_folder
        return _Previous(self._kind(folder) if folder else None, folder, False, row.filing_keyword)

    def _kind(self, folder: str) -> str:
        return self._folders.kind(folder) if self._folders is not None else OTHER

    # -- flags: $Junk / $NotJunk / \Answered -------------------------------------------------------
    def _flags(self, mailbox: BaseMailBox, name: str, kind: str, status: FolderStatus, since: int | None) -> None:
        first = max(1, status.uid_next - FLAG_RESCAN_UIDS)
        changed = mailbox_folders.changed_flags(mailbox, since, first)
        interesting = {uid: flags for uid, flags in changed.items()
                       if flags & {"$junk", "$notjunk", "junk", "notjunk", "nonjunk", "\\answered"}}
        for uid, flags in interesting.items():
            with self.db.session() as session:
                at = session.execute(AT_LOCATION_SQL, {"account": self.account_id, "folder": name,
                                                       "uidvalidity": status.uidvalidity, "uid": uid}).scalar()
            message = int(at) if at is not None else None
            if message is None:
                headers = mailbox_folders.fetch_headers(mailbox, [uid]).get(uid)
                message = self._identify(mailbox, name, status.uidvalidity, uid, headers) if headers else None
            if message is not None:
                self._keywords(message, flags, kind)

    def _keywords(self, message: int, flags: set[str], kind: str) -> None:
        junk = bool(flags & {"$junk", "junk"})
        not_junk = bool(flags & {"$notjunk", "notjunk", "nonjunk"})
        with self.db.session() as session, session.begin():
            previous = self._previous(session, message)
            ours = (previous.filing_keyword or "").lower()
            newest = newest_labels(session, [message]).get(message)
            label: str | None = None
            if junk and not not_junk and ours != "$junk":
                label = "spam"
            elif not_junk and not junk and ours != "$notjunk":
                label = "ham"
            if label is not None:
                # A move is newer evidence than a keyword that travelled along with the message.
                if newest is None or (newest.label != label and newest.source != "user_move"):
                    self._label(session, message, label, "client_keyword",
                                f"{'$Junk' if label == 'spam' else '$NotJunk'} set by a mail client")
                return
            if "\\answered" in flags and kind != JUNK and self.account.learning.implicit_labels and newest is None:
                self._label(session, message, "ham", "replied_thread", "answered (\\Answered)")

    # -- implicit ham ---------------------------------------------------------------------------
    def _replied(self, headers: Headers) -> None:
        """A message From the account: its recipients are correspondents, the messages it answers are ham."""
        with self.db.session() as session, session.begin():
            for address in headers.recipients:
                if address not in self.own:
                    session.execute(CORRESPONDENT_SQL, {"account": self.account_id, "address": address})
            if not headers.refers_to:
                return
            targets = [int(r.id) for r in session.execute(BY_MESSAGE_ID_SQL, {"account": self.account_id,
                                                                              "ids": list(headers.refers_to)})]
            newest = newest_labels(session, targets)
            for target in targets:
                current = newest.get(target)
                if current is None or (current.label != "ham" and not current.explicit):
                    self._label(session, target, "ham", "replied_thread", "the account replied to its thread")

    def _sender_evidence(self, session: Session, message: int, headers: Headers) -> None:
        weight = self.account.learning.sender_evidence_weight
        if weight <= 0 or not headers.from_addr:
            return
        if session.execute(KNOWN_CORRESPONDENTS_SQL, {"account": self.account_id,
                                                     "addresses": [headers.from_addr]}).first() is None:
            return
        if message not in newest_labels(session, [message]):
            self._label(session, message, "ham", "wrote_to_sender", "from an address the account wrote to", weight)

    def _left_in_junk(self) -> None:
        assert self.account_id is not None
        with self.db.session() as session, session.begin():
            labelled = record_left_in_junk(session, self.account_id, self.account.learning.junk_grace_days)
        if labelled:
            self.labels[LEFT_IN_JUNK] += len(labelled)

    def _label(self, session: Session, message: int, label: str, source: str, detail: str,
               weight: float = 1.0) -> None:
        record_label(session, message, label, source, detail, weight)
        self.labels[source] += 1
        log.info("%s: message %d labelled %s (%s: %s)", self.what, message, label, source, detail)


def trackers(settings: Settings, db: Database, stop: threading.Event) -> list[CorrectionTracker]:
    """One tracker per account that watches corrections or bootstraps."""
    return [CorrectionTracker(settings, account, db, stop) for account in settings.accounts
            if account.learning.watch_corrections or account.learning.bootstrap]

