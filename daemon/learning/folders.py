"""The person's folders as learning sees them: Junk (with its subfolders), Trash, and the rest.

A label depends on where a message goes: into the Junk tree is spam, out of it into any folder but
Trash is ham, into Trash says nothing (people delete spam and ham alike). Which folder is Junk
follows what the mail client uses: the configured name, else the SPECIAL-USE ``\\Junk`` folder,
else ``Junk``; its subfolders (``Junk/Phishing``) are Junk too.

Also the few IMAP reads the tracker and the bootstrap share (STATUS, SEARCH, header fields), each
one round trip, on the folder selected read-only (EXAMINE): learning never changes the mailbox.
"""

from __future__ import annotations

import imaplib
import re
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from imap_tools import BaseMailBox

from daemon.config import AccountSettings
from daemon.imap import connection, operations
from daemon.learning.tracking import JUNK, OTHER, TRASH

_FETCH_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_FETCH_UID = re.compile(rb"UID (\d+)")
HEADER_FIELDS = "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID FROM TO CC IN-REPLY-TO REFERENCES)]"
_MESSAGE_IDS = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class FolderMap:
    """Names and roles of the selectable folders of one mailbox."""

    names: tuple[str, ...]
    junk: str
    trash: str
    drafts: frozenset[str]
    sent: frozenset[str]
    delimiter: str

    def _in_tree(self, name: str, root: str) -> bool:
        return name == root or (bool(self.delimiter) and name.startswith(root + self.delimiter))

    def kind(self, name: str) -> str:
        if self._in_tree(name, self.junk):
            return JUNK
        if self._in_tree(name, self.trash):
            return TRASH
        return OTHER

    @property
    def junk_tree(self) -> list[str]:
        return [n for n in self.names if self.kind(n) == JUNK]

    def kept(self, name: str) -> bool:
        """Mail here was kept by the person: not Junk, Trash, Drafts or Sent (which is theirs, not received)."""
        return self.kind(name) == OTHER and name not in self.drafts and name not in self.sent


def read_folders(mailbox: BaseMailBox, account: AccountSettings) -> FolderMap:
    """LIST the mailbox once and name its Junk, Trash, Drafts and Sent folders."""
    infos = [i for i in mailbox.folder.list() if "\\noselect" not in (f.lower() for f in i.flags)]

    def special(attribute: str) -> list[str]:
        return [i.name for i in infos if attribute in (f.lower() for f in i.flags)]

    names = tuple(i.name for i in infos)
    junk = account.learning.junk_folder or account.spam.junk_folder or next(iter(special("\\junk")), "Junk")
    trash = account.learning.trash_folder or next(iter(special("\\trash")), "Trash")
    drafts = set(special("\\drafts")) | ({"Drafts"} & set(names))
    sent = set(special("\\sent")) | ({"Sent"} & set(names))
    delimiter = next((i.delim for i in infos if i.delim), "/")
    return FolderMap(names, junk, trash, frozenset(drafts), frozenset(sent), delimiter)


def examine(mailbox: BaseMailBox, folder: str) -> None:
    """Select ``folder`` read-only: nothing learning does may change flags or expunge."""
    operations.select(mailbox, folder, readonly=True)


def search(mailbox: BaseMailBox, criteria: str) -> list[int]:
    """UID SEARCH in the selected folder, ascending."""
    typ, data = mailbox.client.uid("SEARCH", criteria)
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID SEARCH {criteria} failed: {typ}")
    return sorted({int(u) for u in (data[0] or b"").split()})


def changed_flags(mailbox: BaseMailBox, since_modseq: int | None, first_uid: int) -> dict[int, set[str]]:
    """Flags by UID of messages whose flags changed since ``since_modseq`` (CONDSTORE ``CHANGEDSINCE``).

    Without a modseq (the server has no CONDSTORE) the flags of every UID from ``first_uid`` on: a
    bounded rescan of the newest messages.
    """
    if since_modseq is not None:
        typ, data = mailbox.client.uid("FETCH", "1:*", f"(UID FLAGS) (CHANGEDSINCE {since_modseq})")
    else:
        typ, data = mailbox.client.uid("FETCH", f"{max(first_uid, 1)}:*", "(UID FLAGS)")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"UID FETCH FLAGS failed: {typ}")
    found: dict[int, set[str]] = {}
    for response in data:
        line = response[0] if isinstance(response, tuple) else response
        if not isinstance(line, bytes):
            continue
        uid, flags = _FETCH_UID.search(line), _FETCH_FLAGS.search(line)
        if uid and flags:
            found[int(uid.group(1))] = {f.lower() for f in flags.group(1).decode("ascii", "replace").split()}
    return found


@dataclass(frozen=True)
class Headers:
    """What learning reads of a message without downloading it."""

    message_id: str | None
    from_addr: str
    recipients: tuple[str, ...]
    refers_to: tuple[str, ...]  # Message-IDs from In-Reply-To and References


def parse_headers(block: bytes) -> Headers:
    parsed = BytesHeaderParser(policy=policy.compat32).parsebytes(block, headersonly=True)

    def text(name: str) -> str:
        values = parsed.get_all(name) or []
        return " ".join(str(v) for v in values)

    message_id = str(parsed.get("Message-ID") or "").strip()[:998] or None
    senders = getaddresses([text("From")])
    recipients = tuple(a.lower() for _, a in getaddresses([text("To"), text("Cc")]) if "@" in a)
    refers = tuple(dict.fromkeys(_MESSAGE_IDS.findall(text("In-Reply-To") + " " + text("References"))))
    return Headers(message_id, senders[0][1].lower() if senders else "", recipients, refers)


def fetch_headers(mailbox: BaseMailBox, uids: list[int]) -> dict[int, Headers]:
    return {uid: parse_headers(block) for uid, block in connection.fetch_section(mailbox, uids, HEADER_FIELDS).items()}
