"""Opening an IMAP connection the way every part of Mailsense needs it.

Two things here matter beyond imap-tools' defaults: TLS verification is on unless the admin
turns it off, and capabilities are re-read after login. imaplib keeps the pre-login list,
which on Dovecot and Gmail lacks MOVE and UIDPLUS; imap-tools' ``move()`` would then fall back
to COPY + \\Deleted + a plain EXPUNGE that removes *every* deleted message in the folder.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl
import threading
from dataclasses import dataclass
from typing import Any

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError

from daemon.config import AccountSettings, TLSMode

log = logging.getLogger(__name__)

# In imaplib's FETCH data a response starts with "<seq> ("; what follows a literal does not.
_FETCH_START = re.compile(rb"^\d+ \(")
_FETCH_UID = re.compile(rb"[( ]UID (\d+)(?=[ )])")
_QUOTED = re.compile(rb'"(?:[^"\\]|\\.)*"')
# A section sent as a quoted string or NIL instead of a literal: legal, and rare.
_QUOTED_SECTION = re.compile(rb'BODY\[[^\]]*\](?:<\d+>)? (?:"((?:[^"\\]|\\.)*)"|NIL)')
_STATUS_ITEM = re.compile(rb"(UIDVALIDITY|UIDNEXT|HIGHESTMODSEQ) (\d+)")

# What a dropped, refused or timed-out connection looks like from imaplib and imap-tools.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    imaplib.IMAP4.abort,
    imaplib.IMAP4.error,
    OSError,  # includes socket.timeout, ConnectionRefusedError, ssl.SSLError
    EOFError,
)


class AuthenticationFailed(Exception):
    """The server refused our credentials: retrying fast will not help and may lock the account."""


def ssl_context(account: AccountSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=account.ca_file or None)
    if not account.verify_cert:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def refresh_capabilities(mailbox: BaseMailBox) -> None:
    typ, data = mailbox.client.capability()
    if typ == "OK" and data and data[-1]:
        mailbox.client.capabilities = tuple(data[-1].decode("ascii", "replace").upper().split())


def connect(account: AccountSettings) -> BaseMailBox:
    """Connect and log in (no folder selected); raise AuthenticationFailed or a CONNECTION_ERRORS type."""
    port, timeout = account.effective_port, account.timeout_seconds
    mailbox: BaseMailBox
    if account.tls is TLSMode.implicit:
        mailbox = MailBox(account.host, port, timeout=timeout, ssl_context=ssl_context(account))
    elif account.tls is TLSMode.starttls:
        mailbox = MailBoxStartTls(account.host, port, timeout=timeout, ssl_context=ssl_context(account))
    else:
        mailbox = MailBoxUnencrypted(account.host, port, timeout=timeout)
    try:
        mailbox.login(account.user, account.password(), initial_folder=None)
    except MailboxLoginError:
        _close_quietly(mailbox)
        raise AuthenticationFailed(f"login refused for user {account.user!r} on {account.host}:{port}") from None
    except BaseException:
        _close_quietly(mailbox)
        raise
    refresh_capabilities(mailbox)
    return mailbox


def _close_quietly(mailbox: BaseMailBox) -> None:
    with contextlib.suppress(Exception):
        mailbox.client.shutdown()


def close(mailbox: BaseMailBox) -> None:
    """Log out politely when the connection is healthy, else just drop the socket."""
    try:
        mailbox.client.sock.settimeout(5)
        mailbox.logout()
    except Exception:
        _close_quietly(mailbox)


def has_capability(mailbox: BaseMailBox, name: str) -> bool:
    return name.upper() in mailbox.client.capabilities


def search_uids_above(mailbox: BaseMailBox, last_uid: int) -> list[int]:
    """UIDs greater than ``last_uid`` in the selected folder.

    ``UID n:*`` always matches the highest message even when its UID is below n, hence the filter.
    """
    typ, data = mailbox.client.uid("SEARCH", f"UID {last_uid + 1}:*")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID SEARCH failed: {typ}")
    uids = sorted({int(u) for u in (data[0] or b"").split()})
    return [u for u in uids if u > last_uid]


def fetch_raw(mailbox: BaseMailBox, uids: list[int]) -> dict[int, bytes]:
    """Exact RFC 822 bytes by UID, with BODY.PEEK so \\Seen is never set by us."""
    return fetch_section(mailbox, uids, "BODY.PEEK[]")


def fetch_section(mailbox: BaseMailBox, uids: list[int], item: str) -> dict[int, bytes]:
    """One body section (``item``, e.g. ``BODY.PEEK[]``) of every UID in ``uids`` that still exists.

    The UID is taken from wherever the server puts it: Dovecot sends it before the literal,
    Exchange and mail.ru after it, and a reader that only looks in front takes every message
    there for expunged and skips it without a word. A UID that is still missing is not believed
    gone on the response's word: ``UID SEARCH`` decides, and a message that still exists is
    fetched alone, where the one section in the answer can only be its own. So a message is
    left out only when the server no longer has it; one that cannot be read raises instead,
    because callers move their checkpoint past what they were given.
    """
    if not uids:
        return {}
    result, _ = _fetch(mailbox, uids, item)
    missing = [uid for uid in uids if uid not in result]
    if not missing:
        return result
    for uid in _existing(mailbox, missing):
        _warn_once(mailbox, uid)
        found, without_uid = _fetch(mailbox, [uid], item)
        section = found.get(uid)
        if section is None and len(without_uid) == 1:
            section = without_uid[0]
        if section is None:
            raise imaplib.IMAP4.error(f"UID FETCH {uid}: no {item} in the answer, yet the message exists")
        result[uid] = section
    return result


@dataclass
class _FetchResponse:
    text: bytes = b""  # everything outside the literal
    literal: bytes | None = None


def _fetch(mailbox: BaseMailBox, uids: list[int], item: str) -> tuple[dict[int, bytes], list[bytes]]:
    """(section by UID, sections of responses that carried no UID) of one UID FETCH."""
    typ, data = mailbox.client.uid("FETCH", ",".join(map(str, uids)), f"(UID {item})")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH failed: {typ}")
    by_uid: dict[int, bytes] = {}
    without_uid: list[bytes] = []
    for response in _fetch_responses(data):
        section = response.literal
        if section is None:
            quoted = _QUOTED_SECTION.search(response.text)
            if quoted is None:
                continue  # FLAGS and the like, e.g. an unsolicited FETCH
            section = re.sub(rb"\\(.)", rb"\1", quoted.group(1) or b"")
        uid = _FETCH_UID.search(_QUOTED.sub(b'""', response.text))
        if uid is None:
            without_uid.append(section)
        else:
            by_uid[int(uid.group(1))] = section
    return by_uid, without_uid


def _fetch_responses(data: list[Any]) -> list[_FetchResponse]:
    """imaplib's flat FETCH data (heads, (head, literal) pairs, trailers) regrouped per response."""
    responses: list[_FetchResponse] = []
    for entry in data:
        head = entry[0] if isinstance(entry, tuple) else entry
        if not isinstance(head, bytes):
            continue
        if _FETCH_START.match(head) or not responses:
            responses.append(_FetchResponse())
        response = responses[-1]
        response.text += head
        if isinstance(entry, tuple) and response.literal is None and isinstance(entry[1], bytes):
            response.literal = entry[1]
    return responses


def _existing(mailbox: BaseMailBox, uids: list[int]) -> list[int]:
    """Which of ``uids`` the selected folder still holds."""
    typ, data = mailbox.client.uid("SEARCH", "UID", ",".join(map(str, uids)))
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID SEARCH failed: {typ}")
    found = {int(u) for u in (data[0] or b"").split()}
    return [uid for uid in uids if uid in found]


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(mailbox: BaseMailBox, uid: int) -> None:
    server = f"{mailbox.client.host}:{mailbox.client.port}"
    with _warned_lock:
        if server in _warned:
            return
        _warned.add(server)
    log.warning("IMAP server %s left UID %d out of its FETCH answer although the message exists; such "
                "messages are fetched one at a time (logged once per server)", server, uid)


@dataclass(frozen=True)
class FolderStatus:
    """One STATUS: enough to tell whether anything happened in a folder since the last look."""

    uidvalidity: int
    uid_next: int
    highest_modseq: int | None  # only with CONDSTORE


def folder_status(mailbox: BaseMailBox, folder: str) -> FolderStatus:
    items = "(UIDVALIDITY UIDNEXT HIGHESTMODSEQ)" if has_capability(mailbox, "CONDSTORE") else "(UIDVALIDITY UIDNEXT)"
    typ, data = mailbox.client.status(encode_folder(folder), items)
    if typ != "OK" or not data or not isinstance(data[0], bytes):
        raise imaplib.IMAP4.error(f"STATUS failed for folder {folder!r}: {typ}")
    values = {k.decode(): int(v) for k, v in _STATUS_ITEM.findall(data[0])}
    if "UIDVALIDITY" not in values or "UIDNEXT" not in values:
        raise imaplib.IMAP4.error(f"STATUS of {folder!r} has no UIDVALIDITY or UIDNEXT")
    return FolderStatus(values["UIDVALIDITY"], values["UIDNEXT"], values.get("HIGHESTMODSEQ"))


def quote(value: str) -> str:
    """An IMAP quoted string (RFC 3501): backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_folder(folder: str) -> str:
    """Modified UTF-7 and quoting, as imap-tools does for its own commands."""
    from imap_tools.imap_utf7 import utf7_encode

    return quote(utf7_encode(folder).decode("ascii"))


_SIZE_ITEM = re.compile(rb"RFC822\.SIZE (\d+)")
_UID_ITEM = re.compile(rb"UID (\d+)")


def fetch_attribute(
    mailbox: BaseMailBox, uids: list[int], item: str, pattern: re.Pattern[bytes]
) -> dict[int, re.Match[bytes]]:
    """One small FETCH data item (no bodies) by UID: ``pattern`` matched in each message's response."""
    if not uids:
        return {}
    typ, data = mailbox.client.uid("FETCH", ",".join(map(str, uids)), f"(UID {item})")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH {item} failed: {typ}")
    found: dict[int, re.Match[bytes]] = {}
    for response in data:
        line = response[0] if isinstance(response, tuple) else response
        if not isinstance(line, bytes):
            continue
        uid, match = _UID_ITEM.search(line), pattern.search(line)
        if uid and match:
            found[int(uid.group(1))] = match
    return found


def fetch_sizes(mailbox: BaseMailBox, uids: list[int]) -> dict[int, int]:
    """RFC822.SIZE by UID: what a batch will cost before it is fetched."""
    return {uid: int(m.group(1)) for uid, m in fetch_attribute(mailbox, uids, "RFC822.SIZE", _SIZE_ITEM).items()}


def fetch_headers(mailbox: BaseMailBox, uids: list[int]) -> dict[int, bytes]:
    """The header block only, for a message too large to fetch whole."""
    return fetch_section(mailbox, uids, "BODY.PEEK[HEADER]")
