"""A proper reply: the approved draft text as an RFC 5322 message threaded under the original.

Pure functions, no I/O: the deliverer gives the original's raw bytes, the text and the identity;
what comes back is the exact bytes to APPEND or send. Threading follows RFC 5322 3.6.4:
``In-Reply-To`` is the original's Message-ID, ``References`` its References (else its In-Reply-To)
plus its Message-ID. Recipients follow the usual client rule: Reply-To, else From; with reply-all
the original's other To/Cc recipients are copied, never our own addresses.

Header values taken from the original are untrusted: addresses are re-serialised from parsed
``Address`` objects and message IDs are kept only as ``<...>`` tokens, so nothing in the original
can add a header line to ours.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses

from daemon.mail.mime import ParsedMessage, message_ids

_REPLY_PREFIX = re.compile(r"^\s*(?:re|aw|sv|antw)\s*(?:\[\d+\])?\s*:\s*", re.IGNORECASE)
MAX_REFERENCES = 20  # the first and the latest ones matter to threading; very long chains get trimmed


@dataclass(frozen=True)
class Identity:
    """Who the reply is from, and every address that counts as ours (never a recipient of reply-all)."""

    address: str
    name: str = ""
    own_addresses: frozenset[str] = frozenset()

    def is_ours(self, address: str) -> bool:
        lowered = address.strip().lower()
        return lowered == self.address.lower() or lowered in self.own_addresses


@dataclass(frozen=True)
class Reply:
    message_id: str
    to: list[str]
    cc: list[str]
    subject: str
    raw: bytes


def new_message_id(from_address: str) -> str:
    """A fresh Message-ID on the sender's domain: unguessable, so a mailbox search finds only ours."""
    domain = from_address.rpartition("@")[2].strip().lower() or "mailsense.invalid"
    return f"<mailsense.{secrets.token_hex(12)}@{domain}>"


def reply_subject(subject: str) -> str:
    """``Re: `` once, however many ``Re:``/``RE:``/``Aw:`` prefixes the original carries."""
    rest = subject.strip()
    while (match := _REPLY_PREFIX.match(rest)) is not None:
        rest = rest[match.end():]
    return f"Re: {rest}" if rest else "Re:"


def references_for(original: ParsedMessage) -> list[str]:
    """The reply's References: the original's (else its In-Reply-To), then its Message-ID."""
    earlier = message_ids(original.headers.get("references", []))
    if not earlier:
        earlier = message_ids(original.headers.get("in-reply-to", []))[:1]
    own = message_ids([original.message_id])
    chain = [ref for ref in earlier if ref not in own] + own
    if len(chain) > MAX_REFERENCES:
        chain = chain[:1] + chain[-(MAX_REFERENCES - 1):]
    return chain


def _addresses(original: ParsedMessage, header: str) -> list[tuple[str, str]]:
    return [(name, addr) for name, addr in getaddresses(original.headers.get(header, [])) if "@" in addr]


def recipients(original: ParsedMessage, identity: Identity, reply_all: bool) -> tuple[list[Address], list[Address]]:
    """(To, Cc): Reply-To else From; with ``reply_all`` the other To/Cc minus our own and duplicates."""
    primary = _addresses(original, "reply-to") or _addresses(original, "from")
    if not primary and original.from_addr:
        primary = [(original.from_name, original.from_addr)]
    to = [(n, a) for n, a in primary if not identity.is_ours(a)] or primary
    cc: list[tuple[str, str]] = []
    if reply_all:
        taken = {a.lower() for _, a in to}
        for name, addr in _addresses(original, "to") + _addresses(original, "cc"):
            if identity.is_ours(addr) or addr.lower() in taken:
                continue
            taken.add(addr.lower())
            cc.append((name, addr))
    return [_address(n, a) for n, a in to], [_address(n, a) for n, a in cc]


def _address(name: str, addr: str) -> Address:
    return Address(display_name=name.strip(), addr_spec=addr.strip())


def quoted(original: ParsedMessage) -> str:
    """``On DATE, NAME wrote:`` and the original text with ``> `` before every line."""
    when = original.header("date") or (format_datetime(original.sent_at) if original.sent_at else "")
    who = original.from_name or original.from_addr or "the sender"
    intro = f"On {when.strip()}, {who} wrote:" if when.strip() else f"{who} wrote:"
    lines = original.body_text.rstrip().splitlines() or [""]
    return intro + "\n" + "\n".join(f"> {line}" if line else ">" for line in lines)


def build_reply(
    original: ParsedMessage,
    text: str,
    identity: Identity,
    message_id: str,
    *,
    reply_all: bool = False,
    now: datetime | None = None,
) -> Reply:
    """The reply as bytes with CRLF line ends (what IMAP APPEND and SMTP both want)."""
    to, cc = recipients(original, identity, reply_all)
    if not to:
        raise ValueError("the original message has no From or Reply-To address to reply to")
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = _address(identity.name, identity.address)
    msg["To"] = tuple(to)
    if cc:
        msg["Cc"] = tuple(cc)
    subject = reply_subject(original.subject)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id
    own_id = message_ids([original.message_id])
    if own_id:
        msg["In-Reply-To"] = own_id[0]
    references = references_for(original)
    if references:
        msg["References"] = " ".join(references)
    body = text.rstrip() + "\n\n" + quoted(original) + "\n"
    msg.set_content(body, charset="utf-8")
    return Reply(
        message_id=message_id,
        to=[a.addr_spec for a in to],
        cc=[a.addr_spec for a in cc],
        subject=subject,
        raw=msg.as_bytes(),
    )
