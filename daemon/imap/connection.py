"""Opening an IMAP connection the way every part of Mailsense needs it.

Two things here matter beyond imap-tools' defaults: TLS verification is on unless the admin
turns it off, and capabilities are re-read after login. imaplib keeps the pre-login list,
which on Dovecot and Gmail lacks MOVE and UIDPLUS; imap-tools' ``move()`` would then fall back
to COPY + \\Deleted + a plain EXPUNGE that removes *every* deleted message in the folder.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl

from imap_tools import BaseMailBox, MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError

from daemon.config import AccountSettings, TLSMode

_FETCH_UID = re.compile(rb"UID (\d+)")
_STATUS_ITEM = re.compile(rb"(UIDVALIDITY|HIGHESTMODSEQ) (\d+)")

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
    if not uids:
        return {}
    typ, data = mailbox.client.uid("FETCH", ",".join(map(str, uids)), "(UID BODY.PEEK[])")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH failed: {typ}")
    result: dict[int, bytes] = {}
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            match = _FETCH_UID.search(item[0])
            if match:
                result[int(match.group(1))] = item[1]
    return result


def folder_status(mailbox: BaseMailBox, folder: str) -> tuple[int, int | None]:
    """(UIDVALIDITY, HIGHESTMODSEQ or None) of ``folder``; HIGHESTMODSEQ only with CONDSTORE."""
    items = "(UIDVALIDITY HIGHESTMODSEQ)" if has_capability(mailbox, "CONDSTORE") else "(UIDVALIDITY)"
    typ, data = mailbox.client.status(encode_folder(folder), items)
    if typ != "OK" or not data or not data[0]:
        raise imaplib.IMAP4.error(f"STATUS failed for folder {folder!r}: {typ}")
    values = {k.decode(): int(v) for k, v in _STATUS_ITEM.findall(data[0])}
    if "UIDVALIDITY" not in values:
        raise imaplib.IMAP4.error(f"STATUS of {folder!r} has no UIDVALIDITY")
    return values["UIDVALIDITY"], values.get("HIGHESTMODSEQ")


def quote(value: str) -> str:
    """An IMAP quoted string (RFC 3501): backslash and double quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_folder(folder: str) -> str:
    """Modified UTF-7 and quoting, as imap-tools does for its own commands."""
    from imap_tools.imap_utf7 import utf7_encode

    return quote(utf7_encode(folder).decode("ascii"))
