"""The IMAP operations delivery needs: find Drafts and Sent, look for a Message-ID, append, remove one draft.

The connection itself comes from ``daemon.imap.connection`` (TLS, capabilities re-read after
login). Looking for a Message-ID is what makes a retry safe: our IDs are random tokens on our
own domain, so ``SEARCH HEADER Message-ID`` (a substring match) cannot find someone else's
message, and each hit is still checked against the exact header before it counts.
"""

from __future__ import annotations

import imaplib
import re
from email import policy
from email.parser import BytesHeaderParser

from imap_tools import BaseMailBox

from daemon.imap import connection, operations
from daemon.mail.mime import content_sha256

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_MESSAGE_ID_FIELD = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"


def drafts_folder(mailbox: BaseMailBox, configured: str) -> str:
    return operations.role_folder(mailbox, configured, "\\Drafts", "Drafts")


def sent_folder(mailbox: BaseMailBox, configured: str) -> str:
    return operations.role_folder(mailbox, configured, "\\Sent", "Sent")



def header_message_id(header: bytes) -> str | None:
    value = BytesHeaderParser(policy=policy.compat32).parsebytes(header, headersonly=True).get("Message-ID")
    return str(value).strip() if value else None


def find_message_id(mailbox: BaseMailBox, folder: str, message_id: str) -> list[int]:
    """UIDs in ``folder`` whose Message-ID is exactly ``message_id`` (selects the folder read-write)."""
    if operations.search_refusal(message_id) is not None:
        raise ValueError(f"cannot search for Message-ID {message_id!r}")
    operations.select(mailbox, folder, readonly=False)
    typ, data = mailbox.client.uid("SEARCH", "HEADER", "Message-ID", connection.quote(message_id))
    if typ != "OK":
        raise imaplib.IMAP4.error("UID SEARCH HEADER Message-ID failed")
    candidates = sorted({int(u) for u in (data[0] or b"").split()})
    headers = connection.fetch_section(mailbox, candidates, _MESSAGE_ID_FIELD)
    return [uid for uid in sorted(headers) if header_message_id(headers[uid]) == message_id]


def append(mailbox: BaseMailBox, folder: str, raw: bytes, flags: str) -> int | None:
    """APPEND ``raw`` with ``flags`` (e.g. ``\\Draft \\Seen``); the new UID when the server says it."""
    typ, data = mailbox.client.append(connection.encode_folder(folder), f"({flags})", None, raw)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"APPEND to {folder!r} failed")
    for item in data or []:
        match = _APPENDUID.search(item if isinstance(item, bytes) else b"")
        if match:
            return int(match.group(2))
    return None


def remove_if_untouched(mailbox: BaseMailBox, folder: str, message_id: str, delivered_sha256: str) -> bool:
    """Remove our draft from ``folder`` if it is still there byte for byte; True when removed.

    Only that one UID is expunged (UID EXPUNGE, RFC 4315): a plain EXPUNGE would also remove
    whatever else the person had marked deleted. Without UIDPLUS the draft stays.
    """
    if not connection.has_capability(mailbox, "UIDPLUS"):
        return False
    for uid in find_message_id(mailbox, folder, message_id):
        raw = connection.fetch_raw(mailbox, [uid]).get(uid)
        if raw is None or content_sha256(raw) != delivered_sha256:
            continue
        typ, _ = mailbox.client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
        if typ != "OK":
            raise imaplib.IMAP4.error("UID STORE \\Deleted failed")
        typ, _ = mailbox.client.uid("EXPUNGE", str(uid))
        if typ != "OK":
            raise imaplib.IMAP4.error("UID EXPUNGE failed")
        return True
    return False


def is_untouched(mailbox: BaseMailBox, folder: str, message_id: str, delivered_sha256: str) -> bool:
    """Is our draft still in ``folder`` exactly as delivered?"""
    for uid in find_message_id(mailbox, folder, message_id):
        raw = connection.fetch_raw(mailbox, [uid]).get(uid)
        if raw is not None and content_sha256(raw) == delivered_sha256:
            return True
    return False
