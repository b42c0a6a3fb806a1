"""Committing a received message: the one write every ingress path shares.

The row (raw bytes included) and, for IMAP, the folder checkpoint are committed in one
transaction, so after a crash either both are there or neither is. Two unique keys make the
insert idempotent: the server location (folder, UIDVALIDITY, UID) and the content hash (which
covers the Message-ID). A known message seen at a new location (a UIDVALIDITY reset, a move
between watched folders) only has its location updated and is not processed again.

After a UIDVALIDITY reset the watcher may also ask for "known messages only" (``insert_unknown``):
mail that was in the folder before Mailsense's start point and was never stored must not turn
into new work just because its UID changed (see ``daemon.ingest.imap``).
"""

from __future__ import annotations

import enum
import logging

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from daemon.db.tables import Account, Folder, Message
from daemon.mail.mime import content_sha256, quick_message_id

log = logging.getLogger(__name__)


# The checkpoint only moves forward, in the same transaction as the row it covers.
ADVANCE_CHECKPOINT_SQL = text(
    "UPDATE folders SET last_uid = GREATEST(last_uid, :uid), last_sync_at = now() WHERE id = :id"
)

class Stored(enum.Enum):
    inserted = "inserted"
    duplicate = "duplicate"  # this exact location was stored before
    relocated = "relocated"  # known content at a new location: location updated, not reprocessed
    skipped = "skipped"  # unknown mail from before the folder's start point: not stored, checkpoint moved


def ensure_account(session: Session, name: str) -> Account:
    session.execute(insert(Account).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
    return session.execute(select(Account).where(Account.name == name)).scalar_one()


def ensure_folder(session: Session, account_name: str, folder_name: str) -> Folder:
    account = ensure_account(session, account_name)
    session.execute(
        insert(Folder)
        .values(account_id=account.id, name=folder_name)
        .on_conflict_do_nothing(index_elements=["account_id", "name"])
    )
    return session.execute(
        select(Folder).where(Folder.account_id == account.id, Folder.name == folder_name)
    ).scalar_one()


def _insert(session: Session, values: dict[str, object]) -> int | None:
    stmt = insert(Message).values(**values).on_conflict_do_nothing().returning(Message.id)
    return session.execute(stmt).scalar_one_or_none()


def store_message(
    session: Session,
    *,
    account_id: int,
    raw: bytes,
    source: str,
    first_stage: str,
    folder_id: int | None = None,
    uidvalidity: int | None = None,
    uid: int | None = None,
) -> tuple[Stored, int]:
    """Insert or match one message inside the caller's transaction; return what happened and the row id."""
    sha = content_sha256(raw)
    new_id = _insert(
        session,
        {
            "account_id": account_id,
            "folder_id": folder_id,
            "uidvalidity": uidvalidity,
            "uid": uid,
            "source": source,
            "message_id": quick_message_id(raw),
            "content_sha256": sha,
            "raw": raw,
            "size": len(raw),
            "stage": first_stage,
        },
    )
    if new_id is not None:
        return Stored.inserted, new_id
    if uid is not None:
        at_location = session.execute(
            select(Message.id).where(
                Message.folder_id == folder_id, Message.uidvalidity == uidvalidity, Message.uid == uid
            )
        ).scalar_one_or_none()
        if at_location is not None:
            return Stored.duplicate, at_location
    known = session.execute(
        select(Message.id).where(Message.account_id == account_id, Message.content_sha256 == sha)
    ).scalar_one()
    if uid is not None:
        session.execute(
            update(Message)
            .where(Message.id == known)
            .values(folder_id=folder_id, uidvalidity=uidvalidity, uid=uid)
        )
        return Stored.relocated, known
    return Stored.duplicate, known


def store_imap_message(
    session: Session,
    folder: Folder,
    uidvalidity: int,
    uid: int,
    raw: bytes,
    first_stage: str,
    insert_unknown: bool = True,
) -> Stored:
    """Store one fetched message and move the folder checkpoint past it, atomically.

    With ``insert_unknown=False`` a message whose content is not stored yet is skipped (only the
    checkpoint moves); a known one is matched and relocated as usual.
    """
    with session.begin():
        if not insert_unknown and not _known(session, folder.account_id, content_sha256(raw)):
            session.execute(ADVANCE_CHECKPOINT_SQL, {"uid": uid, "id": folder.id})
            return Stored.skipped
        result, _ = store_message(
            session,
            account_id=folder.account_id,
            raw=raw,
            source="imap",
            first_stage=first_stage,
            folder_id=folder.id,
            uidvalidity=uidvalidity,
            uid=uid,
        )
        session.execute(ADVANCE_CHECKPOINT_SQL, {"uid": uid, "id": folder.id})
    return result


def _known(session: Session, account_id: int, sha: str) -> bool:
    found = session.execute(
        select(Message.id).where(Message.account_id == account_id, Message.content_sha256 == sha)
    ).scalar_one_or_none()
    return found is not None


def advance_checkpoint(session: Session, folder_id: int, uid: int) -> None:
    """Move the checkpoint to ``uid`` (never back) when every UID up to it is dealt with.

    Used when a start window ends below UIDs that were deliberately left out: without it each
    catch-up would search the window again until new mail moved the checkpoint past it.
    """
    with session.begin():
        session.execute(ADVANCE_CHECKPOINT_SQL, {"uid": uid, "id": folder_id})


OVERSIZE_SQL = text(
    """
    UPDATE messages SET stage = 'quarantined', quarantine_reason = :reason, parked_stage = stage, size = :size
     WHERE id = :id AND stage = :first_stage
    """
)


def store_oversized_imap_message(
    session: Session, folder: Folder, uidvalidity: int, uid: int, headers: bytes, size: int, limit: int,
    first_stage: str,
) -> Stored:
    """Record a message too large to fetch by its headers, quarantined with the reason; it stays in the mailbox.

    Nothing is lost (the message is still on the server, and the row says where and why), and
    one 200 MB attachment cannot take the daemon's memory with it.
    """
    with session.begin():
        result, row_id = store_message(
            session, account_id=folder.account_id, raw=headers, source="imap", first_stage=first_stage,
            folder_id=folder.id, uidvalidity=uidvalidity, uid=uid,
        )
        if result is Stored.inserted:
            reason = (f"{size / 1048576:.1f} MiB is more than max_message_bytes ({limit / 1048576:.1f} MiB): "
                      "only the headers were fetched; the message stays in the mailbox")
            session.execute(OVERSIZE_SQL, {"reason": reason, "size": size, "id": row_id, "first_stage": first_stage})
        session.execute(ADVANCE_CHECKPOINT_SQL, {"uid": uid, "id": folder.id})
    return result
