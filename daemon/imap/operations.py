"""The IMAP side of filing a verdict: find Junk, check identity, set keywords, move.

Every operation works by UID and re-checks that the UID still holds the message we mean: a UID
in a folder whose UIDVALIDITY changed, or a message the user already moved, must never be acted
on blindly. At the stored UID our exact Message-ID is enough (a UID is never reused); anywhere
else a message is ours only when its exact Message-ID and its bytes (the sha256 stored at
ingestion) both match, because the server's Message-ID search matches substrings and two
messages may share an ID (a list copy and the direct one): a search only nominates candidates.
"""

from __future__ import annotations

import imaplib
import re
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from typing import cast

from imap_tools import BaseMailBox
from imap_tools.errors import MailboxFolderCreateError

from daemon.imap import connection
from daemon.mail.mime import content_hashes

# Anything but printable ASCII and space: CR/LF (a folded Message-ID keeps them) would end the IMAP
# command line early and make the rest a command of its own; non-ASCII needs a CHARSET.
_UNSEARCHABLE = re.compile(r"[^\x20-\x7e]")
_CANDIDATES_PER_FETCH = 500  # keeps a UID set well inside a server's command-line limit


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
    """Create ``name`` if missing; another connection creating it at the same moment is fine."""
    if not mailbox.folder.exists(name):
        try:
            mailbox.folder.create(name)
        except MailboxFolderCreateError:
            if not mailbox.folder.exists(name):
                raise
    return name


def role_folder(mailbox: BaseMailBox, configured: str, attribute: str, default: str) -> str:
    """The configured folder, else the one marked SPECIAL-USE ``attribute``, else ``default`` (created if missing)."""
    if configured:
        return ensure_folder(mailbox, configured)
    return special_use_folder(mailbox, attribute) or ensure_folder(mailbox, default)


def junk_folder(mailbox: BaseMailBox, configured: str) -> str:
    return role_folder(mailbox, configured, "\\Junk", "Junk")


def select(mailbox: BaseMailBox, folder: str, *, readonly: bool = False) -> int:
    """SELECT (read-write) or EXAMINE (``readonly``) ``folder``; return its UIDVALIDITY."""
    typ, _ = mailbox.client.select(connection.encode_folder(folder), readonly=readonly)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"{'EXAMINE' if readonly else 'SELECT'} {folder!r} failed")
    values = mailbox.client.untagged_responses.get("UIDVALIDITY") or [b"0"]
    # typeshed allows (literal, bytes) items in untagged responses; UIDVALIDITY is a plain number
    return int(cast(bytes, values[-1]))


def search_refusal(message_id: str | None) -> str | None:
    """Why the server is not asked for ``message_id``, or None when it may be."""
    if message_id is None:
        return "it has no Message-ID to search for"
    bad = _UNSEARCHABLE.search(message_id)
    if bad is None:
        return None
    kind = "a control" if ord(bad.group()) < 0x80 else "a non-ASCII"
    return f"its Message-ID {message_id[:80]!r} has {kind} character, so it is not searched for"


def _message_id_as_stored(raw: bytes) -> str | None:
    """The Message-ID exactly as ingestion stores it (``daemon.mail.mime.quick_message_id``).

    Repeated here because this layer may not import ``daemon.mail``; a difference would only make
    a candidate fail the check (the message is then skipped), never pass it.
    """
    try:
        value = BytesHeaderParser(policy=policy.compat32).parsebytes(raw[:256 * 1024], headersonly=True).get(
            "Message-ID")
    except Exception:
        return None
    if not value:
        return None
    return str(value).strip()[:998] or None


_MESSAGE_ID_FIELD = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"


def _holds(mailbox: BaseMailBox, uid: int, target: Target) -> bool:
    """Does ``uid`` in the selected folder hold our bytes (and so our Message-ID too)?"""
    raw = connection.fetch_raw(mailbox, [uid]).get(uid)
    return raw is not None and target.content_sha256 in content_hashes(raw)


def _at_stored_uid(mailbox: BaseMailBox, target: Target) -> bool:
    """Does the stored UID still hold our message? By exact Message-ID, else by the bytes.

    A UID is never reused within one UIDVALIDITY (RFC 3501 2.3.1.1), so here the Message-ID
    only has to tell a stale row from ours, and one header line does that without downloading
    every message again; only a message without Message-ID is compared by its bytes.
    """
    if target.message_id is None:
        return _holds(mailbox, target.uid, target)
    header = connection.fetch_section(mailbox, [target.uid], _MESSAGE_ID_FIELD).get(target.uid)
    return header is not None and _message_id_as_stored(header) == target.message_id


def _search_message_id(mailbox: BaseMailBox, message_id: str) -> list[int]:
    typ, data = mailbox.client.uid("SEARCH", "HEADER", "Message-ID", connection.quote(message_id))
    if typ != "OK":
        raise imaplib.IMAP4.error("UID SEARCH HEADER Message-ID failed")
    return sorted({int(u) for u in (data[0] or b"").split()})


def _find(mailbox: BaseMailBox, target: Target) -> int | None:
    """Search the selected folder by Message-ID; a hit counts only with our exact ID and our bytes.

    SEARCH HEADER matches substrings ("<a>" finds "<x<a>y>", "@" nearly everything), in no
    promised order, and two messages may share an ID, so each hit's Message-ID is compared
    first (cheap: one header line for many UIDs) and the survivors' bytes are hashed.
    """
    if target.message_id is None or search_refusal(target.message_id) is not None:
        return None
    candidates = _search_message_id(mailbox, target.message_id)
    for start in range(0, len(candidates), _CANDIDATES_PER_FETCH):
        headers = connection.fetch_section(mailbox, candidates[start : start + _CANDIDATES_PER_FETCH],
                                           _MESSAGE_ID_FIELD)
        for uid in sorted(headers):
            if _message_id_as_stored(headers[uid]) == target.message_id and _holds(mailbox, uid, target):
                return uid
    return None


def locate(mailbox: BaseMailBox, target: Target) -> int | None:
    """Select the source folder and return the UID that now holds our message, or None if it is not there.

    None also when the stored UID is stale and the Message-ID may not be searched for
    (``search_refusal`` says why): guessing is how the wrong message gets moved.
    """
    uidvalidity = select(mailbox, target.folder)
    if uidvalidity == target.uidvalidity and _at_stored_uid(mailbox, target):
        return target.uid
    return _find(mailbox, target)


def is_in_folder(mailbox: BaseMailBox, folder: str, target: Target) -> bool:
    """Is our message (same ID, same bytes) in ``folder``? Selects it; False when it cannot be searched."""
    if search_refusal(target.message_id) is not None or not mailbox.folder.exists(folder):
        return False
    select(mailbox, folder)
    return _find(mailbox, target) is not None


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
