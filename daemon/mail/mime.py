"""MIME parsing: raw RFC 822 bytes to the fields the later stages use.

Parsing is forgiving (``policy.default`` records defects instead of raising) because real mail
is messy; only input with nothing to work on (0 bytes, no header block) is refused, with
``Unparseable`` naming why. A message whose structure makes the stdlib parser raise still gets a
minimal parse (:func:`salvage_message`): quarantined mail is never classified or filed, so a message
that could not be parsed at all would otherwise be a way past the filter.

Mail is hostile input. Every step here takes time linear in what it reads, and what it reads is
capped (the ``MAX_*`` values below, each cut named in ``defects``): crafted HTML such as
``"<script>x" * n`` makes backtracking regexes quadratic (4.7 s at 72 KB, tens of minutes for a
megabyte), and the stdlib's header and HTML parsers have superlinear corners of their own. The
caps bound every cost we know of; ``daemon.parse`` adds a deadline for the ones we do not.
Nothing here touches the database, so it is tested with plain bytes.
"""

from __future__ import annotations

import codecs
import email
import email.utils
import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.headerregistry import BaseHeader, UnstructuredHeader
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from email.policy import EmailPolicy
from html import escape, unescape

import charset_normalizer
import html2text

MAX_BODY_CHARS = 200_000
MAX_TEXT_CHARS = 1_000_000
"""Characters of plain text read per message: the stored body is at most ``MAX_BODY_CHARS``; the
rest only weighs the plain part against the HTML one, which a megabyte does as well as more."""
MAX_PART_BYTES = 4_000_000
"""Bytes of one text part decoded (a part may be 20 MB of base64); enough for either cap above."""
MAX_HTML_CHARS = 500_000
"""Characters of HTML converted per message. html2text takes about 2 µs a character of ordinary
markup, so this is about a second; the text of half a megabyte of HTML fills the body anyway."""
MAX_HTML_MARKUP = 25_000
"""Tags, attributes and character references handed to html2text, which spends 10-20 µs on each;
HTML with more (no real mail; crafted markup has one per character) is read by a plain tag strip."""
MAX_HEADER_CHARS = 8_000
"""Characters of one header value the stdlib parses: its header parser is pure Python and grows
faster than the length (a 100 KB Subject of encoded-words took 0.7 s, a 100 KB To: list 3.5 s).
Stored values are cut to 4,000 characters after decoding anyway."""
MAX_STRUCTURE_HEADER_CHARS = 2_000
"""The same for Content-Type and Content-Disposition, which the stdlib re-parses on every access
(a dozen per part): a 100 KB Content-Type of 20,000 parameters took 20 s. Real ones are < 300."""
MAX_HEADERS = 500
"""Header lines decoded per message (real mail has a few dozen, long Received chains a hundred)."""
MAX_HEADER_BLOCK_CHARS = 64_000
"""Characters of header values decoded per message, all lines together."""
MAX_PARTS = 1_000
"""Leaf parts read per message."""
MAX_MULTIPARTS = 50
"""Multipart boundaries declared per message. The stdlib checks every line against the boundary of
every enclosing multipart, so nesting costs lines x depth; the rest of a message that declares more
is not parsed (real mail nests a few levels: a forward of a forward with attachments)."""
MAX_DETECT_BYTES = 256_000
"""Bytes per message given to charset detection, all parts and headers together."""
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


@dataclass
class _Reading:
    """One parse's notes on what it cut or could not read (they become defects), and its detection budget."""

    notes: list[str] = field(default_factory=list)
    detect_left: int = MAX_DETECT_BYTES
    html_left: int = MAX_HTML_CHARS

    def note(self, text: str) -> None:
        if text not in self.notes and len(self.notes) < 50:
            self.notes.append(text)


# Codecs Python has that no mail program writes text in. Decoding by them raises (idna, undefined)
# or turns readable ASCII into other characters (punycode made "Buy cheap pills now" one CJK
# character), so naming one hid a message's words from the filter. They count as no charset.
_NOT_MAIL_CODECS = frozenset({"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"})


def _mail_codec(charset: str | None) -> str | None:
    """The Python codec for a declared charset, or None for a name that is unknown or no mail charset."""
    if not charset:
        return None
    try:
        info = codecs.lookup(charset)
    except Exception:  # LookupError; ValueError for a name with a NUL byte in it
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_MAIL_CODECS:
        return None
    return info.name


class _Cut(str):
    """A header value cut at its limit; ``length`` is how long it was (for the defect)."""

    length = 0


_STRUCTURE_HEADERS = frozenset({"content-type", "content-disposition"})


class _BoundedPolicy(EmailPolicy):
    """``policy.default``, with each header value cut at its limit and each parsed header reused.

    The stdlib parses a header again on every access, with a parser whose time grows faster than
    the value's length; cutting at the source bounds every access, the cache makes it one per value.
    """

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        limit = MAX_STRUCTURE_HEADER_CHARS if name.strip().lower() in _STRUCTURE_HEADERS else MAX_HEADER_CHARS
        if len(value) <= limit:
            return name, value
        cut = _Cut(value[:limit])
        cut.length = len(value)
        return name, cut

    def header_fetch_parse(self, name: str, value: str) -> str:
        if hasattr(value, "name"):
            return value
        return _parsed_header(name, value.replace("\r", "").replace("\n", ""))


@functools.lru_cache(maxsize=256)
def _parsed_header(name: str, value: str) -> BaseHeader:
    """A header object; one whose parameters cannot be decoded (``name*=idna''...``) as plain text."""
    header: BaseHeader
    try:
        header = _POLICY.header_factory(name, value)
    except Exception:
        try:
            header = _UNSTRUCTURED(name, value)
        except Exception:  # an encoded-word in a codec that raises: keep the ASCII
            header = _UNSTRUCTURED(name, value.encode("ascii", "replace").decode("ascii").replace("=?", "= ?"))
    return header


_UNSTRUCTURED: type[BaseHeader] = type("_UnstructuredHeader", (UnstructuredHeader, BaseHeader), {})
_POLICY = _BoundedPolicy()


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


def content_hashes(raw: bytes) -> list[str]:
    """The hashes under which these bytes may be stored: as they are, and with CRLF turned into LF.

    IMAP sends CRLF line endings, so a row stored from bytes with bare LF (an import, a message
    first received elsewhere) is the same message as the server's CRLF copy.
    """
    hashes = [content_sha256(raw)]
    if b"\r\n" in raw:
        hashes.append(content_sha256(raw.replace(b"\r\n", b"\n")))
    return hashes


def quick_message_id(raw: bytes) -> str | None:
    """Message-ID from the header block only: used at insert time, before full parsing."""
    try:
        headers = BytesHeaderParser(policy=policy.compat32).parsebytes(raw[:256 * 1024], headersonly=True)
        value = headers.get("Message-ID")
    except Exception:
        return None
    if not value:
        return None
    return _safe_str(value).strip()[:998] or None  # no NUL: PostgreSQL text cannot hold one


_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


def message_ids(values: Iterable[str | None]) -> list[str]:
    """Every ``<...>`` Message-ID token in ``values`` (References, In-Reply-To...), in order, once each.

    Lenient on purpose: an ID without ``@`` still names a message its sender's client will
    recognise, so threads and replies keep it.
    """
    seen: list[str] = []
    for value in values:
        for token in _MESSAGE_ID.findall(value or ""):
            if token not in seen:
                seen.append(token)
    return seen


def _safe_str(value: object) -> str:
    """Header values may be malformed; never let one header break the whole message."""
    try:
        text = str(value)
    except Exception:
        return ""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


_ENCODED_WORD_CHARSET = re.compile(r"=\?([^?*\s]{1,64})((?:\*[^?\s]{0,32})?)\?([qQbB])\?")


def _readable_encoded_words(value: str) -> str:
    """Encoded-words whose charset is no mail codec (``=?punycode?q?...?=``, unknown names) read as UTF-8.

    The stdlib decodes them by the codec when Python has one (punycode turned ASCII words into other
    characters) and as ASCII otherwise (every other byte became U+FFFD); UTF-8 keeps what is readable.
    """
    if "=?" not in value:
        return value
    return _ENCODED_WORD_CHARSET.sub(
        lambda m: m.group(0) if _mail_codec(m.group(1)) else f"=?utf-8{m.group(2)}?{m.group(3)}?", value)


def _decode_header(name: str, raw_value: str) -> str:
    """One header value, decoded; a value the modern parser chokes on falls back to plain RFC 2047.

    ``policy.default`` raises (IndexError, ...) on some malformed values, e.g. ``Message-Id: <>``.
    """
    raw_value = _readable_encoded_words(raw_value)
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
    return next((c for c in charsets if c and c not in ("us-ascii", "ascii") and _mail_codec(c)), None)


def _decode_raw_header(value: str, hint: str | None, reading: _Reading | None = None) -> str:
    raw = re.sub(r"\r?\n(?=[ \t])", "", value).strip().encode("ascii", "surrogateescape")
    codec = _mail_codec(hint)
    if codec:
        try:
            return _safe_str(raw.decode(codec))
        except Exception:  # UnicodeDecodeError: the bytes are not in the body's charset after all
            pass
    if sum(byte >= 0x80 for byte in raw) * 5 <= len(raw):
        # A few high bytes in ASCII text ("signs \xa380m deal") are a Western symbol or accent;
        # detection on so little text took the pound sign for Shift_JIS.
        return _safe_str(raw.decode("cp1252", errors="replace"))
    return _safe_str(_decode_undeclared(raw, reading))


def _decoded_headers(msg: Message, reading: _Reading | None = None) -> dict[str, list[str]]:
    """Every header value, decoded, by lower-case name, in message order (at most ``MAX_HEADERS``)."""
    reading = reading or _Reading()
    headers: dict[str, list[str]] = {}
    hint: list[str | None] = []  # the body's charset, looked up at most once
    chars_left = MAX_HEADER_BLOCK_CHARS
    for count, (name, value) in enumerate(msg.raw_items()):
        raw_value = str(value)
        if count == MAX_HEADERS or len(raw_value) > chars_left:
            reading.note(f"HeadersCut: {len(msg):,} header lines, the first {count:,} read")
            break
        chars_left -= len(raw_value)
        if isinstance(value, _Cut):
            reading.note(f"HeaderCut: {_safe_str(name.lower())[:40]} of {value.length:,} characters")
        if _RAW_8BIT.search(raw_value):
            # Unencoded 8-bit bytes in a header (Big5 or EUC-KR subjects in 2002 spam) reach us as
            # surrogate escapes and came out as U+FFFD; the body's charset, else detection, decodes them.
            # The hint walks every part, so only the rare message with such a header pays for it, once.
            if not hint:
                hint.append(_charset_hint(msg))
            decoded = _decode_raw_header(raw_value, hint[0], reading)
        else:
            decoded = _decode_header(name, raw_value)
        headers.setdefault(name.lower(), []).append(decoded)
    return headers


def _first(headers: dict[str, list[str]], name: str) -> str:
    return next(iter(headers.get(name, [])), "")


# An address in a header the address parser gave up on; one start per run of local-part
# characters (``\b[\w.+-]+@`` started at every dot of "a.a.a.a...", which is quadratic).
_LOOSE_ADDRESS = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+")


def _addresses(headers: dict[str, list[str]], name: str, reading: _Reading | None = None) -> list[tuple[str, str]]:
    values = headers.get(name, [])
    try:
        return [(n, a) for n, a in email.utils.getaddresses(values) if a or n]
    except Exception as exc:  # RecursionError on "From: ((((...": nested comments are parsed recursively
        if reading is not None:
            reading.note(f"AddressesUnreadable: {name} ({type(exc).__name__})")
        return [("", m.group(0)) for value in values for m in _LOOSE_ADDRESS.finditer(value)]


def _decode_part(part: Message, reading: _Reading | None = None) -> str:
    """A text part's words; a charset that cannot decode them counts as none (never raises on the bytes).

    ``charset=idna`` raised UnicodeError (only LookupError was caught), which made the message
    unparseable, and quarantined mail is never classified: naming such a charset got spam past the filter.
    """
    payload = part.get_payload(decode=True)
    # decode=True gives bytes for a leaf part and None for a multipart one (never a Message)
    if not isinstance(payload, bytes):
        return ""
    if len(payload) > MAX_PART_BYTES:
        if reading is not None:
            reading.note(f"PartCut: a text part of {len(payload):,} bytes, the first {MAX_PART_BYTES:,} read")
        payload = payload[:MAX_PART_BYTES]
    try:
        charset = part.get_content_charset()
    except Exception:  # an RFC 2231 charset parameter in a codec that raises
        charset = None
    # "us-ascii" on 8-bit bytes is a default the sender's software wrote without looking; decoding
    # by it turns every non-ASCII byte into U+FFFD, so such bytes are treated as undeclared.
    if charset in ("us-ascii", "ascii") and not payload.isascii():
        charset = None
    codec = _mail_codec(charset)  # an unknown name, or a codec no mail is written in, counts as none
    if codec:
        try:
            return payload.decode(codec, errors="replace")
        except Exception:  # a codec is free to ignore errors= and raise (idna does): then it is no charset
            pass
    return _decode_undeclared(payload, reading)


def _decode_undeclared(payload: bytes, reading: _Reading | None = None) -> str:
    """Bytes without a (known) charset: UTF-8 if valid, else the most plausible charset.

    Spam from 2002 often sends KOI8-R, Windows-1251 or GB2312 with no charset at all. Decoding that
    as UTF-8 with replacement turned whole bodies into U+FFFD, which reviewers cannot read and models
    can only learn as "garbage" (65 of the 6,046 shared corpus messages). Detection reads at most
    ``MAX_DETECT_BYTES`` per message (``reading``), so a thousand undeclared parts cost no more than four.
    """
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    sample = payload[:_DETECT_BYTES]
    if reading is not None:
        sample = sample[:max(reading.detect_left, 0)]
        reading.detect_left -= len(sample)
    best = charset_normalizer.from_bytes(sample, cp_isolation=_MAIL_CHARSETS).best() if sample else None
    # The candidates are all Python codecs, so the decode cannot raise LookupError.
    return payload.decode(best.encoding if best is not None else "cp1252", errors="replace")


# The markup html2text gets is rewritten by one left-to-right scan (_clean_markup) into a form its
# parser (the stdlib's html.parser) reads in linear time. On raw markup that parser is quadratic:
# every "<" that does not open a complete tag is re-scanned to the end of the input ("<a" * 40,000
# took 10.8 s, "<a " * 7,000 5.3 s), and so are unclosed comments and bare "&#". Tags are read as
# html.parser reads them (a tag ends at the first ">" outside a quoted attribute value, and its
# attributes are found with html.parser's own pattern), so ordinary mail reads as it did.
_TAG_NAME = re.compile(r"</?([A-Za-z][^\t\n\r\f />\x00]*+)(?:\s|/(?!>))*+")  # html.parser's tagfind_tolerant
_ATTRIBUTE = re.compile(  # html.parser's attrfind_tolerant
    r"""((?<=['"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*('[^']*'|"[^"]*"|(?!['"])[^>\s]*))?(?:\s|/(?!>))*""")
_PLAIN_NAME = re.compile(r"[\w:.-]++")
_MAX_QUOTED = 4096
"""How far past a ">" a quoted attribute value is followed to its closing quote (bounds the rescans)."""
_SCRIPT_OR_STYLE_END = {name: re.compile(rf"</{name}\s*+>", re.IGNORECASE) for name in ("script", "style")}
_BARE_AMPERSAND = re.compile(r"&(?![A-Za-z]|#[0-9]|#[xX][0-9a-fA-F])")
_TAG_OPEN = re.compile(r"<[A-Za-z/!?]")  # any other "<" is text to html.parser
# html2text indents a nested list, and quotes a nested blockquote, once per level on every line: output
# (and time) grow with depth x lines. Real mail nests a few levels; deeper tags are dropped.
_NESTING = frozenset({"blockquote", "ul", "ol"})
_MAX_NESTING = 32
_TAG = re.compile(r"<[^>]+>")  # linear on cleaned markup only: there every "<" opens a tag closed before the next
# html2text writes every <blockquote> as "> " lines, which read as a quoted reply downstream and are
# dropped. Mail clients mark real quotes with type="cite"; without one, blockquotes are layout
# (an MSN Groups notification carried its whole message in one), so they become plain blocks.
_CITE = re.compile(r"<blockquote\b[^>]*\btype\s*=\s*[\"']?cite", re.IGNORECASE)
_BLOCKQUOTE = re.compile(r"<(/?)blockquote\b[^>]*>", re.IGNORECASE)
_SPACE_RUN = re.compile(r"\s+")
_LINE_SPACE = re.compile(r"[ \t\r\f\v]+")


def _markup_text(text: str) -> str:
    """Text between tags, escaped so that html.parser reads it as text in one piece."""
    return _BARE_AMPERSAND.sub("&amp;", text).replace("<", "&lt;")


def _start_tag(html: str, pos: int, gt: int) -> tuple[list[re.Match[str]], int]:
    """The attributes of a start tag that begin at ``pos``, and the index of its closing ">".

    ``gt`` is the first ">" after ``pos``; a quoted value may run past it, as in html.parser, but
    is followed at most ``_MAX_QUOTED`` characters further, so a stray quote costs a bounded look
    ahead rather than a scan to the end.
    """
    attributes = []
    limit = gt + _MAX_QUOTED
    while True:
        match = _ATTRIBUTE.match(html, pos, limit)
        if match is None or match.end() == pos:
            break
        attributes.append(match)
        pos = match.end()
    if pos > gt:  # a quoted value held a ">"
        end = html.find(">", pos)
        return attributes, end if end >= 0 else gt
    return attributes, gt


def _clean_tag(name: str, attributes: list[re.Match[str]], tail: str) -> tuple[str, int]:
    """A start tag with its values quoted and escaped, and its cost (1 + its attributes)."""
    parts = [name]
    for match in attributes:
        attribute, rest, value = match.group(1).lower(), match.group(2), match.group(3)
        if not _PLAIN_NAME.fullmatch(attribute):
            continue
        if not rest:
            parts.append(attribute)
            continue
        if len(value) > 1 and value[0] == value[-1] and value[0] in ("'", '"'):
            value = value[1:-1]
        parts.append(f'{attribute}="{escape(unescape(value))}"')  # html.parser unescapes it back
    if tail.strip() == "/":
        parts.append("/")
    return "<" + " ".join(parts) + ">", len(parts)


def _clean_markup(html: str) -> tuple[str, int]:
    """HTML that html.parser reads in one pass, and how much markup it holds (tags, attributes, references).

    One scan from left to right; every search it starts either consumes what it scanned or, when it
    finds nothing (no ``</script>``, ``-->`` or ">" further on), is remembered and not repeated, so
    the time is linear in the length. What it does:

    - script and style blocks are removed, and a stray ``<script>`` or ``</script>`` (spam in the
      SpamAssassin corpus starts its HTML with one) is dropped: it leaves html2text's "inside a script"
      counter negative, and html2text then silently drops every later word;
    - comments, declarations, processing instructions and tags with odd names are dropped (html2text
      shows none of them), an unclosed comment's ``<!--`` only;
    - a tag is rewritten with its attribute values quoted and escaped; a "<" that opens no tag becomes
      ``&lt;``, a "&" that starts no character reference ``&amp;`` (html.parser took a bare "&#" for
      an unfinished reference and read the rest of the markup as text, tags and all);
    - lists and blockquotes nested deeper than ``_MAX_NESTING`` lose their inner tags.
    """
    out: list[str] = []
    markup = 0
    depth: dict[str, int] = {}
    dropped: dict[str, int] = {}
    unclosed: set[str] = set()  # "script"/"style" once no closing tag follows: not searched again
    comments_end = True
    gt = html.find(">")  # the first ">" at or after the current "<", kept until passed; -1 once none follows
    pos = 0
    while True:
        opening = _TAG_OPEN.search(html, pos) if gt >= 0 else None
        if opening is not None and 0 <= gt < opening.start():
            gt = html.find(">", opening.start())  # found again only once passed: "<a<a<a..." does not rescan
        if opening is None or gt < 0:  # no tag can follow: the rest is text
            out.append(_markup_text(html[pos:]))
            break
        lt = opening.start()
        out.append(_markup_text(html[pos:lt]))
        if html.startswith("<!--", lt):
            end = html.find("-->", lt + 4) if comments_end else -1
            comments_end = end >= 0
            pos = end + 3 if end >= 0 else lt + 4
            continue
        name_match = _TAG_NAME.match(html, lt)
        if name_match is None:  # <!DOCTYPE ...>, <![endif]>, <?xml ...?>, "</ >": html.parser drops them
            pos = gt + 1
            continue
        closing = html[lt + 1] == "/"
        name = name_match.group(1).lower()
        attributes: list[re.Match[str]] = []
        if not closing:
            attributes, gt = _start_tag(html, name_match.end(), gt)
        tail = html[attributes[-1].end() if attributes else name_match.end():gt]
        pos = gt + 1
        if not _PLAIN_NAME.fullmatch(name):
            continue
        if name in _SCRIPT_OR_STYLE_END:
            if not closing and name not in unclosed:
                end_tag = _SCRIPT_OR_STYLE_END[name].search(html, pos)
                if end_tag is None:
                    unclosed.add(name)
                else:
                    pos = end_tag.end()
            out.append(" ")
            continue
        if name in _NESTING:
            if closing and dropped.get(name):
                dropped[name] -= 1
                continue
            if closing:
                depth[name] = max(depth.get(name, 0) - 1, 0)
            elif depth.get(name, 0) >= _MAX_NESTING:
                dropped[name] = dropped.get(name, 0) + 1
                continue
            else:
                depth[name] = depth.get(name, 0) + 1
        text, cost = (f"</{name}>", 1) if closing else _clean_tag(name, attributes, tail)
        out.append(text)
        markup += cost
    cleaned = "".join(out)
    return cleaned, markup + cleaned.count("&")


def _strip_tags(html: str) -> str:
    """The text of cleaned markup: tags out, references decoded, a run of spaces with a line break one break.

    Whitespace is matched run by run: the former ``\\s*\\n\\s*`` rescanned a long run of spaces
    (``&nbsp;`` x n) from each of its characters, which is quadratic.
    """
    text = unescape(_TAG.sub(" ", html))
    text = _SPACE_RUN.sub(lambda m: "\n" if "\n" in m.group() else _LINE_SPACE.sub(" ", m.group()), text)
    return text.strip()


def html_to_text(html: str) -> str:
    """Readable text of an HTML body, in time linear in its length.

    The markup is first cleaned (:func:`_clean_markup`: script and style out, every tag complete).
    Markup with more than ``MAX_HTML_MARKUP`` tags, attributes and references is not given to
    html2text (10-20 µs each) but read by a plain tag strip. If html2text returns far fewer words
    than the markup visibly has, the tag strip is used as well.
    """
    cleaned, markup = _clean_markup(html)
    if not _CITE.search(cleaned):
        cleaned = _BLOCKQUOTE.sub(r"<\1div>", cleaned)
    if markup > MAX_HTML_MARKUP:
        return _strip_tags(cleaned)
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
# A "--" line's token is checked for length in Python: "[^\r\n]{1,200}?[ \t\r]*$" rescanned a long
# run of trailing spaces once per character of the token.
_DELIMITER = re.compile(r"^--([^\r\n]*+)\r*+$", re.MULTILINE)
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
        line = match.group(1).rstrip(" \t")
        if not 1 <= len(line) <= 200:
            continue
        token = line.removesuffix("--").rstrip()
        if token:
            counts[token] = counts.get(token, 0) + 1
    if not counts:
        return None
    boundary, seen = max(counts.items(), key=lambda item: item[1])
    if seen < 2 or '"' in boundary:
        return None
    head = f'Content-Type: {part.get_content_type()}; boundary="{boundary}"\n\n'
    salvaged = email.message_from_string(head + payload, policy=_POLICY)
    return salvaged if salvaged.is_multipart() else None


def _word_count(text: str) -> int:
    return len(_WORDS.findall(text))


def _filename(part: Message, reading: _Reading) -> str | None:
    try:
        name = part.get_filename()
    except Exception as exc:  # an RFC 2231 name in a codec that raises (filename*=idna''%ff)
        reading.note(f"FilenameUnreadable: {type(exc).__name__}")
        try:
            param = part.get_param("filename", None, "content-disposition") or part.get_param("name")
        except Exception:
            return "?"
        name = param[2] if isinstance(param, tuple) else param
        name = name or "?"  # a name was given: the part is still an attachment
    return _safe_str(name) if name else None


def _cut_point(markup: str, limit: int) -> int:
    """Where to cut HTML at about ``limit``: before the last tag that starts in the 4 KB before it."""
    lt = markup.rfind("<", max(limit - 4096, 0), limit)
    return lt if lt > 0 else limit


def _body_and_attachments(msg: Message, reading: _Reading | None = None,
                          salvaged: bool = False) -> tuple[str, bool, list[Attachment]]:
    """The body (the plain part unless it is a stub, else the HTML's text) and the attachments.

    A part the stdlib cannot read (a parameter in a codec that raises) is noted and skipped, or read
    lossily when it is text, so one bad part does not cost the message its other parts.
    """
    reading = reading or _Reading()
    plain: list[str] = []
    html: list[str] = []
    html_texts: list[str] = []  # already converted (from a salvaged multipart)
    attachments: list[Attachment] = []
    leaves = 0
    for part in msg.walk():
        if part.is_multipart():
            continue
        leaves += 1
        if leaves > MAX_PARTS:
            reading.note(f"PartsCut: more than {MAX_PARTS:,} parts, the first {MAX_PARTS:,} read")
            break
        ctype = "application/octet-stream"
        try:
            ctype = _content_type(part)
            if part.get_content_maintype() == "multipart" and not salvaged:
                repaired = _salvage_multipart(part)
                if repaired is not None:
                    body, from_html, inner = _body_and_attachments(repaired, reading, salvaged=True)
                    (html_texts if from_html else plain).append(body)
                    attachments.extend(inner)
                    continue
            disposition = (part.get_content_disposition() or "").lower()
            filename = _filename(part, reading)
            if disposition == "attachment" or (filename and not ctype.startswith("text/")):
                payload = part.get_payload(decode=True)
                attachments.append(Attachment(filename=filename, content_type=_safe_str(ctype),
                                              size=len(payload) if isinstance(payload, bytes) else 0))
                continue
            if ctype == "text/plain":
                plain.append(_decode_part(part, reading))
            elif ctype == "text/html":
                html.append(_decode_part(part, reading))
        except Exception as exc:  # one part the stdlib cannot read must not cost the others
            reading.note(f"PartUnreadable: {_safe_str(ctype)[:60]} ({type(exc).__name__})")
            lossy = part.get_payload()
            if ctype.startswith("text/") and isinstance(lossy, str):
                plain.append(_safe_str(lossy[:MAX_PART_BYTES]))
    plain_text = "\n".join(plain)
    if len(plain_text) > MAX_TEXT_CHARS:
        reading.note(f"TextCut: {len(plain_text):,} characters of plain text, the first {MAX_TEXT_CHARS:,} read")
        plain_text = plain_text[:MAX_TEXT_CHARS]
    converted = []
    if html:
        markup = "\n".join(html)
        if len(markup) > reading.html_left:
            reading.note(f"HtmlCut: {len(markup):,} characters of HTML, the first {reading.html_left:,} read")
            markup = markup[:_cut_point(markup, reading.html_left)]
        reading.html_left -= len(markup)
        converted.append(html_to_text(markup))
    html_text = "\n".join(converted + html_texts)
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
    except Exception:  # TypeError, ValueError, IndexError, OverflowError on made-up dates
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean_text(text: str) -> str:
    """Text PostgreSQL can store: no NUL, no lone surrogate (a UTF-7 body can decode to one)."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


_BOUNDARY_PARAMETER = re.compile(rb"boundary\s*+\*?=", re.IGNORECASE)


def _cut_deep_nesting(raw: bytes, reading: _Reading) -> tuple[bytes, bytes]:
    """``raw`` cut before the line that declares multipart boundary number ``MAX_MULTIPARTS + 1``: (head, rest)."""
    for count, match in enumerate(_BOUNDARY_PARAMETER.finditer(raw), start=1):
        if count > MAX_MULTIPARTS:
            cut = raw.rfind(b"\n", 0, match.start()) + 1
            reading.note(f"MultipartsCut: more than {MAX_MULTIPARTS} multipart boundaries; "
                         f"the last {len(raw) - cut:,} bytes read as raw text")
            return raw[:cut], raw[cut:]
    return raw, b""


def _raw_text(data: bytes, reading: _Reading) -> tuple[str, bool]:
    """Bytes read as text without MIME: decoded lossily, converted when they look like HTML; (text, from HTML)."""
    text = _decode_undeclared(data[:MAX_PART_BYTES], reading)
    if not _LOOKS_LIKE_HTML.search(text, 0, MAX_HTML_CHARS):
        return text, False
    limit = min(reading.html_left, MAX_HTML_CHARS)
    if len(text) > limit:
        reading.note(f"HtmlCut: {len(text):,} characters of HTML, the first {limit:,} read")
        text = text[:_cut_point(text, limit)]
    reading.html_left -= len(text)
    try:
        return html_to_text(text), True
    except Exception:
        return text, False


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw``; raise ``Unparseable`` only when there is no message to speak of.

    Refused are 0 bytes (or only white space) and bytes in whose first 64 KB no line looks like a
    header ("Name: value"): there is nothing to classify, or nothing says the bytes are mail. The
    parse stage quarantines them with the reason, raw bytes kept, for a person to look at.
    Everything else gets a parse. When the stdlib parser raises on a message (RecursionError on a
    deep structure, a codec error it does not catch), :func:`salvage_message` reads it leniently
    and ``ParseFailed: <error>`` is among its defects, so the message is still classified and filed.
    """
    if not raw or not raw.strip():
        raise Unparseable("empty message (0 bytes of content)")
    if not _HEADER_NAME.search(raw[:64 * 1024]):
        raise Unparseable("no RFC 822 header block found")
    reading = _Reading()
    try:
        return _parse(raw, reading)
    except Exception as exc:
        reading.note(f"ParseFailed: {type(exc).__name__}")
        return salvage_message(raw, reading.notes)


def _parse(raw: bytes, reading: _Reading) -> ParsedMessage:
    head, rest = _cut_deep_nesting(raw, reading)
    msg = email.message_from_bytes(head, policy=_POLICY)
    assert isinstance(msg, EmailMessage)

    decoded = _decoded_headers(msg, reading)
    headers = {name: [value[:4000] for value in values] for name, values in decoded.items()}
    body, from_html, attachments = _body_and_attachments(msg, reading)
    if rest:  # the words of a message nested too deep are still read, as raw text
        body = body + "\n" + _raw_text(rest, reading)[0]

    defects = {type(d).__name__ for part in msg.walk() for d in part.defects}
    return _assemble(decoded, headers, body, from_html, attachments, defects, reading)


def _assemble(
    decoded: dict[str, list[str]],
    headers: dict[str, list[str]],
    body: str,
    from_html: bool,
    attachments: list[Attachment],
    defects: set[str],
    reading: _Reading,
) -> ParsedMessage:
    """The one place a ``ParsedMessage`` is put together, for a full parse and a salvaged one alike."""
    senders = _addresses(decoded, "from", reading)
    from_name, from_addr = senders[0] if senders else ("", "")
    return ParsedMessage(
        message_id=(_first(decoded, "message-id").strip() or None),
        subject=_first(decoded, "subject").strip(),
        from_name=from_name,
        from_addr=from_addr.lower(),
        to_addrs=[a.lower() for _, a in _addresses(decoded, "to", reading)],
        cc_addrs=[a.lower() for _, a in _addresses(decoded, "cc", reading)],
        sent_at=_sent_at(_first(decoded, "date")),
        headers=headers,
        body_text=_clean_text(body)[:MAX_BODY_CHARS],
        body_from_html=from_html,
        attachments=attachments,
        defects=sorted(defects.union(reading.notes)),
    )


_HEADER_LINE = re.compile(r"([!-9;-~]++):[ \t]*+(.*)", re.DOTALL)
_LOOKS_LIKE_HTML = re.compile(r"<(?:html|body|head|p|div|br|table|td|font|a|img|center)\b", re.IGNORECASE)


def _scan_headers(raw: bytes) -> tuple[list[tuple[str, str]], int]:
    """``Name: value`` lines from the start of ``raw`` (continuations joined), and where the body starts.

    The block ends at the first empty line or at the first line that is neither a header nor a
    continuation. Lines and values are cut at ``MAX_HEADER_CHARS``, the block at ``MAX_HEADERS`` lines.
    """
    fields: list[tuple[str, str]] = []
    pos = 0
    while pos < len(raw) and len(fields) < MAX_HEADERS:
        newline = raw.find(b"\n", pos)
        end = len(raw) if newline < 0 else newline + 1
        line = raw[pos:min(end, pos + MAX_HEADER_CHARS)].decode("ascii", "surrogateescape").rstrip("\r\n")
        if not line.strip():
            return fields, end
        if line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            if len(value) < MAX_HEADER_CHARS:
                fields[-1] = (name, value + " " + line.strip())
        else:
            match = _HEADER_LINE.match(line)
            if match is None:
                return fields, pos
            fields.append((match.group(1), match.group(2).strip()))
        pos = end
    return fields, pos


def salvage_message(raw: bytes, defects: list[str] | None = None) -> ParsedMessage:
    """A minimal parse of a message the MIME parser cannot take apart, so the spam filter still sees it.

    Headers come from a line scan of the header block (:func:`_scan_headers`), each value decoded as
    far as it goes. The body is the rest, decoded lossily (UTF-8 if valid, else by detection, as a part
    without a charset) and, when it looks like HTML, converted as an HTML part is. MIME structure
    (delimiters, part headers, base64) stays in the text: this is a fallback, and the defects say so.
    """
    reading = _Reading(notes=list(defects or []))
    fields, body_start = _scan_headers(raw)
    decoded: dict[str, list[str]] = {}
    for name, value in fields:
        try:
            text = _decode_raw_header(value, None, reading) if _RAW_8BIT.search(value) else _decode_header(name, value)
        except Exception:
            text = _safe_str(value)
        decoded.setdefault(name.lower(), []).append(text[:4000])
    body, from_html = _raw_text(raw[body_start:], reading)
    return _assemble(decoded, decoded, body, from_html, [], set(), reading)
