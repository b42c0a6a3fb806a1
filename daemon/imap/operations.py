"""The IMAP side of filing a verdict: find Junk, check identity, set keywords, move.

Every operation works by UID and re-checks that the UID still holds the message we mean
(Message-ID, or the content hash when there is none): a UID in a folder whose UIDVALIDITY
changed, or a message the user already moved, must never be acted on blindly.
"""

from __future__ import annotations

import hashlib
import imaplib
import re
from dataclasses import dataclass
from typing import cast

from imap_tools import BaseMailBox

from daemon.imap import connection

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Target:
    """The message we want to act on, as stored."""

    folder: str
    uidvalidity: int
    uid: int
    message_id: str | None
    content_sha256: str


def special_use_folder(mailbox: BaseMailBox, attribute: str) -> str | None:
    for info in mailbox.folder.list():
        if attribute.lower() in (flag.lower() for flag in info.flags):
            return info.name
    return None


def ensure_folder(mailbox: BaseMailBox, name: str) -> str:
    if not mailbox.folder.exists(name):
        mailbox.folder.create(name)
    return name


def junk_folder(mailbox: BaseMailBox, configured: str) -> str:
    """The configured folder, else the one marked SPECIAL-USE \\Junk, else 'Junk' (created if missing)."""
    if configured:
        return ensure_folder(mailbox, configured)
    return special_use_folder(mailbox, "\\Junk") or ensure_folder(mailbox, "Junk")


def _select(mailbox: BaseMailBox, folder: str) -> int:
    """SELECT read-write; return UIDVALIDITY."""
    typ, _ = mailbox.client.select(connection.encode_folder(folder), readonly=False)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"SELECT {folder!r} failed")
    values = mailbox.client.untagged_responses.get("UIDVALIDITY") or [b"0"]
    # typeshed allows (literal, bytes) items in untagged responses; UIDVALIDITY is a plain number
    return int(cast(bytes, values[-1]))


def _fetch_identity(mailbox: BaseMailBox, uid: int, with_body: bool) -> tuple[str | None, str | None] | None:
    """(Message-ID, sha256 of the full message if asked) of ``uid``, or None when the UID is gone."""
    item = "BODY.PEEK[]" if with_body else "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"
    typ, data = mailbox.client.uid("FETCH", str(uid), f"(UID {item})")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH {uid} failed")
    for part in data:
        if isinstance(part, tuple) and len(part) == 2:
            match = _MESSAGE_ID.search(part[1].split(b"\r\n\r\n", 1)[0] if with_body else part[1])
            message_id = match.group(1).decode("utf-8", "replace") if match else None
            return message_id, hashlib.sha256(part[1]).hexdigest() if with_body else None
    return None


def _search_message_id(mailbox: BaseMailBox, message_id: str) -> list[int]:
    typ, data = mailbox.client.uid("SEARCH", "HEADER", "Message-ID", connection.quote(message_id))
    if typ != "OK":
        raise imaplib.IMAP4.error("UID SEARCH HEADER Message-ID failed")
    return [int(u) for u in (data[0] or b"").split()]


def locate(mailbox: BaseMailBox, target: Target) -> int | None:
    """Select the source folder and return the UID that now holds our message, or None if it is not there."""
    uidvalidity = _select(mailbox, target.folder)
    if uidvalidity == target.uidvalidity:
        identity = _fetch_identity(mailbox, target.uid, with_body=target.message_id is None)
        if identity is not None:
            message_id, sha = identity
            if target.message_id is not None and message_id == target.message_id:
                return target.uid
            if target.message_id is None and sha == target.content_sha256:
                return target.uid
    if target.message_id is None:
        return None
    found = _search_message_id(mailbox, target.message_id)
    return found[0] if found else None


def is_in_folder(mailbox: BaseMailBox, folder: str, message_id: str | None) -> bool:
    if message_id is None or not mailbox.folder.exists(folder):
        return False
    _select(mailbox, folder)
    return bool(_search_message_id(mailbox, message_id))


def add_keyword(mailbox: BaseMailBox, uid: int, keyword: str) -> None:
    typ, _ = mailbox.client.uid("STORE", str(uid), "+FLAGS.SILENT", f"({keyword})")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID STORE {keyword} failed")


def move(mailbox: BaseMailBox, uid: int, destination: str) -> None:
    """UID MOVE, or COPY + \\Deleted + UID EXPUNGE of this one UID; never a plain EXPUNGE.

    A plain EXPUNGE would also remove every other message the user had marked \\Deleted.
    """
    folder = connection.encode_folder(destination)
    if connection.has_capability(mailbox, "MOVE"):
        typ, _ = mailbox.client.uid("MOVE", str(uid), folder)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"UID MOVE to {destination!r} failed")
        return
    if not connection.has_capability(mailbox, "UIDPLUS"):
        raise imaplib.IMAP4.error("server has neither MOVE nor UIDPLUS: refusing to move (it would need EXPUNGE)")
    typ, _ = mailbox.client.uid("COPY", str(uid), folder)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID COPY to {destination!r} failed")
    mailbox.client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
    typ, _ = mailbox.client.uid("EXPUNGE", str(uid))
    if typ != "OK":
        raise imaplib.IMAP4.error("UID EXPUNGE failed")
