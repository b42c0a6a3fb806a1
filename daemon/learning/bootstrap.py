"""Learning from what the person already has: their Junk folder is spam, the mail they kept is ham.

Run once per account on its first connect (``[accounts.learning] bootstrap = true``, recorded in
``learning_bootstraps`` so that a restart or a second daemon does not run it again), and by hand
with ``mailsense learn --from-folder Junk=spam INBOX=ham``. The newest ``bootstrap_per_class``
messages of each class are taken (by INTERNALDATE across the folders of that class):

* spam: the Junk folder and its subfolders;
* ham: mail the person kept: read or answered mail in INBOX, and everything filed in other
  folders; never Trash, Junk, Drafts or Sent.

The messages are stored with ``source = 'bootstrap'`` at stage ``done``: they are training data,
never classified, filed or drafted for. Mail in a watched folder that ingestion will process
(above the folder's start point) is left to the pipeline; if it is stored already it gets its label.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from imap_tools import BaseMailBox
from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.config import AccountSettings
from daemon.db.session import Database
from daemon.imap import connection
from daemon.ingest.imap import internal_dates
from daemon.ingest.store import Stored, ensure_account, store_message
from daemon.learning import folders as mailbox_folders
from daemon.learning.labels import newest_labels, record_label
from daemon.mail.mime import content_hashes

log = logging.getLogger(__name__)

STAGE_DONE = "done"  # a terminal stage (daemon.db.queue.TERMINAL_STAGES): no worker ever claims it
SOURCE = "bootstrap"
START_POINT_WAIT_SECONDS = 30.0

CLAIM_SQL = text(
    """
    INSERT INTO learning_bootstraps (account_id) VALUES (:account)
    ON CONFLICT (account_id) DO UPDATE SET started_at = now()
     WHERE learning_bootstraps.finished_at IS NULL AND learning_bootstraps.started_at < now() - interval '1 hour'
    RETURNING account_id
    """
)
FINISH_SQL = text(
    "UPDATE learning_bootstraps SET finished_at = now(), spam = :spam, ham = :ham, detail = :detail "
    "WHERE account_id = :account"
)
START_POINTS_SQL = text(
    """
    SELECT f.name, f.uidvalidity, f.start_uid FROM folders f JOIN accounts a ON a.id = f.account_id
     WHERE a.name = :account AND f.start_from IS NOT NULL
    """
)
PLACE_SQL = text(
    """
    INSERT INTO learning_places (message_id, kind, folder, uidvalidity, uid)
    VALUES (:message_id, :kind, :folder, :uidvalidity, :uid)
    ON CONFLICT (message_id) DO NOTHING
    """
)
KNOWN_SQL = text("SELECT id FROM messages WHERE account_id = :account AND content_sha256 = ANY(:shas)")


@dataclass(frozen=True)
class FolderSpec:
    folder: str
    label: str  # spam | ham
    criteria: str = "ALL"  # UID SEARCH criteria: which messages of the folder count


@dataclass
class Progress:
    """Counts of one learning run, by class, and what was left out."""

    stored: dict[str, int] = field(default_factory=lambda: {"spam": 0, "ham": 0})
    labelled: dict[str, int] = field(default_factory=lambda: {"spam": 0, "ham": 0})
    left_to_pipeline: int = 0
    already_labelled: int = 0

    def summary(self) -> str:
        return (f"spam {self.labelled['spam']}, ham {self.labelled['ham']} labelled "
                f"({self.stored['spam'] + self.stored['ham']} messages stored for learning"
                + (f", {self.already_labelled} already labelled" if self.already_labelled else "")
                + (f", {self.left_to_pipeline} left to the pipeline" if self.left_to_pipeline else "") + ")")


def bootstrap_specs(folder_map: mailbox_folders.FolderMap, account: AccountSettings) -> list[FolderSpec]:
    """Junk tree = spam; INBOX read or answered, other kept folders whole = ham.

    Our own unsure folder (``unsure_action = "move"``, ``Junk/Unsure`` by default) holds the model's
    doubts, not the person's decisions: it is neither.
    """
    unsure = account.spam.unsure_folder if account.spam.unsure_action == "move" else None
    specs = [FolderSpec(name, "spam") for name in folder_map.junk_tree if name != unsure]
    for name in folder_map.names:
        if folder_map.kept(name) and name != unsure:
            specs.append(FolderSpec(name, "ham", "OR SEEN ANSWERED" if name.upper() == "INBOX" else "ALL"))
    return specs


def _pipeline_start_points(db: Database, account: AccountSettings, wait: float) -> dict[str, tuple[int, int]]:
    """(UIDVALIDITY, start UID) of each watched folder: above it, ingestion processes the mail.

    The folder watchers record them on their first connect, usually within a second; a folder
    without one after ``wait`` seconds is treated as wholly the pipeline's.
    """
    deadline = time.monotonic() + wait
    while True:
        with db.session() as session:
            rows = session.execute(START_POINTS_SQL, {"account": account.name}).all()
        found = {r.name: (int(r.uidvalidity or 0), int(r.start_uid or 0)) for r in rows}
        if set(account.folders) <= set(found) or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def learn_from_folders(
    db: Database,
    mailbox: BaseMailBox,
    account: AccountSettings,
    specs: list[FolderSpec],
    per_class: int,
    source: str,
    report: Callable[[str], None],
    stop: threading.Event | None = None,
    start_point_wait: float = START_POINT_WAIT_SECONDS,
    folder_map: mailbox_folders.FolderMap | None = None,
) -> Progress:
    """Store and label the newest ``per_class`` messages of each class from ``specs``' folders.

    ``folder_map`` is the mailbox's folder list when the caller has just read it (one LIST, not two).
    """
    folder_map = folder_map or mailbox_folders.read_folders(mailbox, account)
    missing = [s.folder for s in specs if s.folder not in folder_map.names]
    if missing:
        raise ValueError(f"no folder {', '.join(map(repr, missing))} in the mailbox of account {account.name} "
                         f"(it has {', '.join(folder_map.names)})")
    starts = _pipeline_start_points(db, account, start_point_wait) if account.folders else {}
    progress = Progress()
    for label in ("spam", "ham"):
        chosen = _newest(mailbox, [s for s in specs if s.label == label], per_class)
        report(f"{label}: {len(chosen)} message(s) to learn from "
               f"{', '.join(sorted({f for f, _, _ in chosen})) or 'no folder'}")
        for position in range(0, len(chosen), account.fetch_batch):
            if stop is not None and stop.is_set():
                return progress
            _learn_batch(db, mailbox, account, chosen[position : position + account.fetch_batch], label, source,
                         folder_map, starts, progress)
            report(f"{label}: {min(position + account.fetch_batch, len(chosen))}/{len(chosen)}")
    return progress


def _newest(mailbox: BaseMailBox, specs: list[FolderSpec], limit: int) -> list[tuple[str, int, int]]:
    """(folder, UIDVALIDITY, UID) of the ``limit`` newest messages in ``specs``' folders, newest first."""
    dated: list[tuple[datetime, str, int, int]] = []
    for spec in specs:
        status = connection.folder_status(mailbox, spec.folder)
        mailbox_folders.examine(mailbox, spec.folder)
        uids = mailbox_folders.search(mailbox, spec.criteria)[-limit:]
        for uid, when in internal_dates(mailbox, uids).items():
            dated.append((when, spec.folder, status.uidvalidity, uid))
    dated.sort(key=lambda item: (item[0].astimezone(UTC), item[3]), reverse=True)
    return [(folder, validity, uid) for _, folder, validity, uid in dated[:limit]]


def _learn_batch(
    db: Database, mailbox: BaseMailBox, account: AccountSettings, batch: list[tuple[str, int, int]], label: str,
    source: str, folder_map: mailbox_folders.FolderMap, starts: dict[str, tuple[int, int]], progress: Progress,
) -> None:
    by_folder: dict[str, list[tuple[int, int]]] = {}
    for folder, validity, uid in batch:
        by_folder.setdefault(folder, []).append((validity, uid))
    for folder, items in by_folder.items():
        mailbox_folders.examine(mailbox, folder)
        raws = connection.fetch_raw(mailbox, [uid for _, uid in items])
        with db.session() as session, session.begin():
            account_id = ensure_account(session, account.name).id
            for validity, uid in items:
                raw = raws.get(uid)
                if raw is None:
                    continue
                start = starts.get(folder) if folder in account.folders else None
                pipeline_takes_it = folder in account.folders and (
                    start is None or start[0] != validity or uid > start[1])
                message = _store(session, account_id, raw, pipeline_takes_it)
                if message is None:
                    progress.left_to_pipeline += 1
                    continue
                stored, message_id = message
                if stored:
                    progress.stored[label] += 1
                session.execute(PLACE_SQL, {"message_id": message_id, "kind": folder_map.kind(folder),
                                            "folder": folder, "uidvalidity": validity, "uid": uid})
                if message_id in newest_labels(session, [message_id]):
                    progress.already_labelled += 1
                    continue
                record_label(session, message_id, label, source, f"in folder {folder} when learned")
                progress.labelled[label] += 1


def _store(session: Session, account_id: int, raw: bytes, pipeline_takes_it: bool) -> tuple[bool, int] | None:
    """(newly stored?, message id); None for unknown mail that ingestion will process itself."""
    known = session.execute(KNOWN_SQL, {"account": account_id, "shas": content_hashes(raw)}).scalar()
    if known is not None:
        return False, int(known)
    if pipeline_takes_it:
        return None
    result, message_id = store_message(session, account_id=account_id, raw=raw, source=SOURCE,
                                       first_stage=STAGE_DONE)
    return result is Stored.inserted, message_id


def bootstrap_once(account: AccountSettings, db: Database, mailbox: BaseMailBox,
                   stop: threading.Event) -> Progress | None:
    """The account's day-one bootstrap, if no daemon has done it yet; None when it was done before."""
    with db.session() as session, session.begin():
        account_id = ensure_account(session, account.name).id
        claimed = session.execute(CLAIM_SQL, {"account": account_id}).scalar()
    if claimed is None:
        return None
    what = f"account {account.name}: bootstrap"
    log.info("%s: learning from the mailbox (newest %d per class; Junk is spam, kept mail is ham)",
             what, account.learning.bootstrap_per_class)
    try:
        folder_map = mailbox_folders.read_folders(mailbox, account)
        progress = learn_from_folders(db, mailbox, account, bootstrap_specs(folder_map, account),
                                      account.learning.bootstrap_per_class, SOURCE,
                                      lambda line: log.info("%s: %s", what, line), stop,
                                      folder_map=folder_map)
    except BaseException:
        _release(db, account_id)  # a lost connection or an outage: the next connect starts it again
        raise
    if stop.is_set():
        log.info("%s: interrupted; it starts again after a restart", what)
        _release(db, account_id)
        return progress
    with db.session() as session, session.begin():
        session.execute(FINISH_SQL, {"account": account_id, "spam": progress.labelled["spam"],
                                     "ham": progress.labelled["ham"], "detail": progress.summary()})
    # The scheduler's token job ([learning] token_refresh_seconds) fits token statistics and
    # thresholds on the new labels; this thread goes on watching for corrections meanwhile.
    log.info("%s: done: %s", what, progress.summary())
    return progress


def _release(db: Database, account_id: int) -> None:
    """Give up the claim of an unfinished bootstrap; what it stored and labelled so far is kept (not twice)."""
    with db.session() as session, session.begin():
        session.execute(text("DELETE FROM learning_bootstraps WHERE account_id = :a AND finished_at IS NULL"),
                        {"a": account_id})
