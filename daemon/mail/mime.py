"""MIME parsing: raw RFC 822 bytes to the fields the later stages use.

Parsing is forgiving (``policy.default`` records defects instead of raising) because real mail
is messy; only input with nothing to work on is refused, with ``Unparseable`` naming why.
Nothing here touches the database, so it is tested with plain bytes.
"""

from __future__ import annotations

import email
import email.utils
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from html import unescape

import charset_normalizer
import html2text

MAX_BODY_CHARS = 200_000
_DETECT_BYTES = 64_000
"""Charset detection reads at most this much of a part (its cost grows with the length)."""
# Candidates when a part names no charset. Unrestricted detection took short KOI8-R text for Shift_JIS.
_MAIL_CHARSETS = ["cp1252", "iso8859_2", "koi8_r", "cp1251", "gb18030", "big5", "shift_jis", "euc_jp", "euc_kr"]
_HEADER_NAME = re.compile(rb"^[!-9;-~]+:", re.MULTILINE)
_RAW_8BIT = re.compile("[\udc80-\udcff]")
_STUB_RATIO = 5
"""A text/plain alternative with less than a fifth of the HTML's words is a stub ("your mail program
does not show HTML, go to ..."); the HTML then carries the message and is what we read."""


class Unparseable(ValueError):
    """The bytes are not a message we can work with; the reason is safe to log (no body text)."""


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str | None
    subject: str
    from_name: str
    from_addr: str
    to_addrs: list[str]
    cc_addrs: list[str]
    sent_at: datetime | None
    headers: dict[str, list[str]]
    body_text: str
    body_from_html: bool
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)

    @property
    def from_domain(self) -> str:
        return self.from_addr.rpartition("@")[2].lower()

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None


def content_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def quick_message_id(raw: bytes) -> str | None:
    """Message-ID from the header block only: used at insert time, before full parsing."""
    try:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw[:256 * 1024], headersonly=True)
        value = headers.get("Message-ID")
    except Exception:
        return None
    if not value:
        return None
    return str(value).strip()[:998] or None


def _safe_str(value: object) -> str:
    """Header values may be malformed; never let one header break the whole message."""
    try:
        text = str(value)
    except Exception:
        return ""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def _decode_header(name: str, raw_value: str) -> str:
    """One header value, decoded; a value the modern parser chokes on falls back to plain RFC 2047.

    ``policy.default`` raises (IndexError, ...) on some malformed values, e.g. ``Message-Id: <>``.
    """
    try:
        return _safe_str(policy.default.header_fetch_parse(name, raw_value))
    except Exception:
        try:
            return _safe_str(make_header(decode_header(raw_value)))
        except Exception:
            return _safe_str(raw_value)


def _charset_hint(msg: Message) -> str | None:
    """The first non-ASCII charset a part declares: mail clients write raw header bytes in it too."""
    try:
        charsets = msg.get_charsets()
    except Exception:
        return None
    return next((c for c in charsets if c and c not in ("us-ascii", "ascii")), None)


def _decode_raw_header(value: str, hint: str | None) -> str:
    raw = re.sub(r"\r?\n(?=[ \t])", "", value).strip().encode("ascii", "surrogateescape")
    if hint:
        try:
            return _safe_str(raw.decode(hint))
        except (LookupError, UnicodeDecodeError):
            pass
    if sum(byte >= 0x80 for byte in raw) * 5 <= len(raw):
        # A few high bytes in ASCII text ("signs \xa380m deal") are a Western symbol or accent;
        # detection on so little text took the pound sign for Shift_JIS.
        return _safe_str(raw.decode("cp1252", errors="replace"))
    return _safe_str(_decode_undeclared(raw))


def _decoded_headers(msg: Message) -> dict[str, list[str]]:
    """Every header value, decoded, by lower-case name, in message order."""
    headers: dict[str, list[str]] = {}
    hint: list[str | None] = []  # the body's charset, looked up at most once
    for name, value in msg.raw_items():
        raw_value = str(value)
        if _RAW_8BIT.search(raw_value):
            # Unencoded 8-bit bytes in a header (Big5 or EUC-KR subjects in 2002 spam) reach us as
            # surrogate escapes and came out as U+FFFD; the body's charset, else detection, decodes them.
            # The hint walks every part, so only the rare message with such a header pays for it, once.
            if not hint:
                hint.append(_charset_hint(msg))
            decoded = _decode_raw_header(raw_value, hint[0])
        else:
            decoded = _decode_header(name, raw_value)
        headers.setdefault(name.lower(), []).append(decoded)
    return headers


def _first(headers: dict[str, list[str]], name: str) -> str:
    return next(iter(headers.get(name, [])), "")


def _addresses(headers: dict[str, list[str]], name: str) -> list[tuple[str, str]]:
    return [(n, a) for n, a in email.utils.getaddresses(headers.get(name, [])) if a or n]


def _decode_part(part: Message) -> str:
    payload = part.get_payload(decode=True)
    # decode=True gives bytes for a leaf part and None for a multipart one (never a Message)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset()
    # "us-ascii" on 8-bit bytes is a default the sender's software wrote without looking; decoding
    # by it turns every non-ASCII byte into U+FFFD, so such bytes are treated as undeclared.
    if charset in ("us-ascii", "ascii") and not payload.isascii():
        charset = None
    if charset:
        try:
            return payload.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name counts as none
            pass
    return _decode_undeclared(payload)


def _decode_undeclared(payload: bytes) -> str:
    """Bytes without a (known) charset: UTF-8 if valid, else the most plausible charset.

    Spam from 2002 often sends KOI8-R, Windows-1251 or GB2312 with no charset at all. Decoding that
    as UTF-8 with replacement turned whole bodies into U+FFFD, which reviewers cannot read and models
    can only learn as "garbage" (65 of the 6,046 shared corpus messages).
    """
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(payload[:_DETECT_BYTES], cp_isolation=_MAIL_CHARSETS).best()
    # The candidates are all Python codecs, so the decode cannot raise LookupError.
    return payload.decode(best.encoding if best is not None else "cp1252", errors="replace")


_SCRIPT_OR_STYLE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_STRAY_SCRIPT_OR_STYLE = re.compile(r"</?(script|style)\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
# html2text writes every <blockquote> as "> " lines, which read as a quoted reply downstream and are
# dropped. Mail clients mark real quotes with type="cite"; without one, blockquotes are layout
# (an MSN Groups notification carried its whole message in one), so they become plain blocks.
_CITE = re.compile(r"<blockquote\b[^>]*\btype\s*=\s*[\"']?cite", re.IGNORECASE)
_BLOCKQUOTE = re.compile(r"<(/?)blockquote\b[^>]*>", re.IGNORECASE)


def _strip_tags(html: str) -> str:
    text = re.sub(r"[ \t\r\f\v]+", " ", unescape(_TAG.sub(" ", html)))
    return re.sub(r"\s*\n\s*", "\n", text).strip()


def html_to_text(html: str) -> str:
    """Readable text of an HTML body.

    Script and style blocks are removed before html2text sees the markup: a stray ``</script>``
    (spam in the SpamAssassin corpus starts its HTML with one) leaves html2text's "inside a
    script" counter negative, and it then silently drops every later word. If html2text still
    returns far fewer words than the markup visibly has, a plain tag strip is used instead.
    """
    cleaned = _STRAY_SCRIPT_OR_STYLE.sub(" ", _SCRIPT_OR_STYLE.sub(" ", html))
    if not _CITE.search(cleaned):
        cleaned = _BLOCKQUOTE.sub(r"<\1div>", cleaned)
    converter = html2text.HTML2Text()
    converter.ignore_images = True
    converter.ignore_emphasis = True
    converter.body_width = 0
    converter.ignore_links = False
    converter.ignore_tables = True  # layout tables would become Markdown pipes, noise for every reader
    try:
        text = converter.handle(cleaned)
    except Exception:  # html2text chokes on some broken markup; a tag strip is better than nothing
        return _strip_tags(cleaned)
    # html2text also drops everything after an unclosed <head> (an HTML mailing whose body sits in
    # a <div> after <title>). Markup with several times the words of html2text's output lost text.
    stripped = _strip_tags(cleaned)
    if _word_count(stripped) > 2 * _word_count(text) + 10 or (
            len(text.strip()) < 20 and len(stripped) > 4 * max(len(text.strip()), 10)):
        return stripped
    return text


_CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")
_DELIMITER = re.compile(r"^--([^\r\n]{1,200}?)[ \t\r]*$", re.MULTILINE)
_WORDS = re.compile(r"\w+")


def _content_type(part: Message) -> str:
    """The ``type/subtype`` of a part, also when a semicolon is missing before its parameters.

    ``Content-Type: TEXT/PLAIN charset=US-ASCII`` comes out of the stdlib as
    ``text/plain charset=us-ascii``, which matched neither text type, so the body was lost.
    """
    ctype = part.get_content_type()
    found = _CONTENT_TYPE.match(ctype)
    return found.group(0) if found else ctype


def _salvage_multipart(part: Message) -> Message | None:
    """Re-parse a multipart whose declared boundary never occurs, with the delimiter it really uses.

    Spam sends ``boundary="=Multipart Boundary 1"`` and then writes ``--= Multipart Boundary 1``:
    the stdlib finds no parts and every word of the message was lost. The delimiter used is the
    ``--`` line that recurs most often (it opens each part and, with ``--`` added, closes the last).
    """
    payload = part.get_payload()
    if not isinstance(payload, str):
        return None
    counts: dict[str, int] = {}
    for match in _DELIMITER.finditer(payload):
        token = match.group(1).removesuffix("--").rstrip()
        if token:
            counts[token] = counts.get(token, 0) + 1
    if not counts:
        return None
    boundary, seen = max(counts.items(), key=lambda item: item[1])
    if seen < 2 or '"' in boundary:
        return None
    head = f'Content-Type: {part.get_content_type()}; boundary="{boundary}"\n\n'
    salvaged = email.message_from_string(head + payload, policy=policy.default)
    return salvaged if salvaged.is_multipart() else None


def _word_count(text: str) -> int:
    return len(_WORDS.findall(text))


def _body_and_attachments(msg: Message, salvaged: bool = False) -> tuple[str, bool, list[Attachment]]:
    plain: list[str] = []
    html: list[str] = []
    html_texts: list[str] = []  # already converted (from a salvaged multipart)
    attachments: list[Attachment] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = _content_type(part)
        if part.get_content_maintype() == "multipart" and not salvaged:
            repaired = _salvage_multipart(part)
            if repaired is not None:
                body, from_html, inner = _body_and_attachments(repaired, salvaged=True)
                (html_texts if from_html else plain).append(body)
                attachments.extend(inner)
                continue
        disposition = (part.get_content_disposition() or "").lower()
        filename = part.get_filename()
        if disposition == "attachment" or (filename and not ctype.startswith("text/")):
            payload = part.get_payload(decode=True) or b""
            attachments.append(Attachment(filename=_safe_str(filename) if filename else None,
                                          content_type=ctype, size=len(payload)))
            continue
        if ctype == "text/plain":
            plain.append(_decode_part(part))
        elif ctype == "text/html":
            html.append(_decode_part(part))
    converted = [html_to_text("\n".join(html))] if html else []
    html_text = "\n".join(converted + html_texts)
    plain_text = "\n".join(plain)
    if plain_text.strip() and _word_count(plain_text) * _STUB_RATIO >= _word_count(html_text):
        return plain_text, False, attachments
    if html_text.strip():
        return html_text, True, attachments
    return plain_text, False, attachments


def _sent_at(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(_safe_str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw``; raise ``Unparseable`` only when there is no message to speak of."""
    if not raw or not raw.strip():
        raise Unparseable("empty message (0 bytes of content)")
    if not _HEADER_NAME.search(raw[:64 * 1024]):
        raise Unparseable("no RFC 822 header block found")
    try:
        msg = email.message_from_bytes(raw, policy=policy.default)
    except Exception as exc:  # the stdlib parser is lenient; reaching this means truly broken input
        raise Unparseable(f"MIME parser failed: {type(exc).__name__}") from None
    assert isinstance(msg, EmailMessage)

    decoded = _decoded_headers(msg)
    headers = {name: [value[:4000] for value in values] for name, values in decoded.items()}
    try:
        body, from_html, attachments = _body_and_attachments(msg)
    except Exception as exc:
        raise Unparseable(f"body could not be decoded: {type(exc).__name__}") from None

    senders = _addresses(decoded, "from")
    from_name, from_addr = senders[0] if senders else ("", "")
    defects = sorted({type(d).__name__ for part in msg.walk() for d in part.defects})
    return ParsedMessage(
        message_id=(_first(decoded, "message-id").strip() or None),
        subject=_first(decoded, "subject").strip(),
        from_name=from_name,
        from_addr=from_addr.lower(),
        to_addrs=[a.lower() for _, a in _addresses(decoded, "to")],
        cc_addrs=[a.lower() for _, a in _addresses(decoded, "cc")],
        sent_at=_sent_at(_first(decoded, "date")),
        headers=headers,
        body_text=body.replace("\x00", "")[:MAX_BODY_CHARS],
        body_from_html=from_html,
        attachments=attachments,
        defects=defects,
    )
