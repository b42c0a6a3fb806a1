"""The text a spam model sees, built in one place from a parsed message.

Training, evaluation and the daemon all call :func:`build_text` with the :class:`TextSettings`
saved in the model version directory, so a model never sees text built differently from the
text it was trained on. The transformer and the token-statistics part of a model version each
keep their own settings (the token part reads more of the body and a few headers, because
counting tokens is cheap where the transformer's attention is not).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from daemon.mail.mime import ParsedMessage

# A line that opens a quoted reply: "On Mon, 1 Jan 2002, Bob wrote:" / "Bob <b@x> writes:".
_ATTRIBUTION = re.compile(r"^\s*(on\b.{0,200}\b(wrote|writes)|.{0,120}\b(wrote|writes)\s*):\s*$", re.IGNORECASE)
# Outlook-style forwarded/quoted history.
_ORIGINAL = re.compile(r"^\s*-{2,}\s*(original message|forwarded message)\s*-{2,}\s*$", re.IGNORECASE)
# "-- " is the standard signature separator; mailing-list footers start with a rule of underscores.
_SIGNATURE = re.compile(r"^(-- ?|_{20,}|-{20,})\s*$")
# "-- " always opens a signature. A rule line only ends the message as a list footer when little
# follows it: one with more words after it than before (and more than this) is decoration inside
# the message. Spam opens with rules, and form-mail spam puts its whole text between two, which
# was cut away unread.
_FOOTER_WORDS = 30
_URL = re.compile(r"\b(?:https?://|www\.)([^\s/<>\"')\]]+)[^\s<>\"')\]]*", re.IGNORECASE)
_QUOTE_MARKS = re.compile(r"^\s*(?:\|?>[ \t]?)+")
_FORWARD_WORDS = 3
"""Own words below which the quoted part is read instead (a forward has none of its own)."""
# A mailto link's ?subject=...&body=... query only burns tokens, as a URL's path does.
_MAILTO = re.compile(r"mailto:\s*[\w.+-]+@([\w-]+(?:\.[\w-]+)+)[^\s<>\"')\]]*", re.IGNORECASE)
# A local part is at most 64 characters (RFC 5321). Unbounded, "[\w.+-]+@" rescanned the rest of a run
# from every word in it ("a.a.a.a..."): minutes for a crafted 200 KB body.
_EMAIL = re.compile(r"\b[\w.+-]{1,64}@([\w-]+(?:\.[\w-]+)+)\b")
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_WORD = re.compile(r"\S+")
# SpamAssassin's report_safe body block: "SPAM: ---- Start SpamAssassin results ----", one
# "SPAM: RULE (n points) ..." line per rule, "SPAM: ---- End of SpamAssassin results ----". It may be
# quoted, wrapped, or flattened by HTML into one line followed by a blank line.
_REPORT_START = "Start SpamAssassin results"
_REPORT_END = "End of SpamAssassin results"


@dataclass(frozen=True)
class TextSettings:
    """How a message becomes model input; stored with every model version as JSON."""

    head_words: int = 150
    """Words kept from the start of the cleaned body (the pitch or the question)."""
    tail_words: int = 40
    """Words kept from the end (unsubscribe footers, sign-offs): both ends fit in the token budget."""
    trim_quotes: bool = True
    """Drop quoted replies: in a thread they are someone else's words, often the longest part."""
    trim_signature: bool = True
    """Cut at the signature separator or a mailing-list footer rule."""
    shorten_urls: bool = True
    """Replace a URL by its host name: the host carries the signal, the path only burns tokens."""
    headers: tuple[str, ...] = ()
    """Header names (lower case) whose values are added as ``name: value`` lines."""
    all_headers: bool = False
    """Add every header instead (as bogofilter and SpamAssassin's Bayes read them), except Subject and
    From (already first) and ``X-Spam-*`` verdicts of other filters, which would teach us their mistakes."""
    drop_filter_reports: bool = True
    """Drop the report another filter wrote into the body (SpamAssassin's "SPAM: ..." lines), for the
    reason ``X-Spam-*`` headers are left out. In the shared corpus such reports appear in 5 training ham
    (list mail about SpamAssassin) and 1 test spam, which the transformer then took for ham."""

    recover_lost_text: bool = True
    """Read text that would otherwise be lost: a rule line inside the message does not cut it as a footer,
    a forward's quote is read when the message has no words of its own, and ``mailto:`` links keep only
    their domain. Model versions saved without this setting keep reading text as they were trained."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["headers"] = list(self.headers)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TextSettings:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "headers" in values:
            values["headers"] = tuple(values["headers"])
        values.setdefault("drop_filter_reports", False)  # versions saved before it existed kept the reports
        values.setdefault("recover_lost_text", False)
        return cls(**values)

    @classmethod
    def for_max_length(cls, max_length: int) -> TextSettings:
        """Settings that roughly fill ``max_length`` word pieces (about 1.3 pieces per word)."""
        words = max(16, int((max_length - 24) / 1.3))
        tail = words // 5
        return cls(head_words=words - tail, tail_words=tail)


def _words_after(lines: list[str]) -> list[int]:
    """For each line, the number of words from the next line to the end of the body."""
    after = [0] * len(lines)
    total = 0
    for n in range(len(lines) - 1, -1, -1):
        after[n] = total
        total += len(_WORD.findall(lines[n]))
    return after


def _kept_lines(lines: list[str], settings: TextSettings, trim_quotes: bool) -> list[str]:
    """The lines of the message's own text: no filter report, quoted reply or signature."""
    kept: list[str] = []
    kept_words = 0
    in_report = False
    words_after = _words_after(lines)
    for number, line in enumerate(lines):
        stripped = line.strip()
        if settings.drop_filter_reports and (in_report or _REPORT_START in line):
            in_report = bool(stripped) and _REPORT_END not in line
            if stripped:
                continue
        separator = _SIGNATURE.match(line) if settings.trim_signature and kept else None
        if separator and not settings.recover_lost_text:
            break  # the first versions' rule: any separator ends the text
        if separator and kept_words and (separator.group(1) in ("--", "-- ")
                                         or words_after[number] <= max(kept_words, _FOOTER_WORDS)):
            break
        if trim_quotes:
            if stripped.startswith((">", "|>")):
                continue
            if _ORIGINAL.match(stripped):
                break
            if _ATTRIBUTION.match(stripped):
                continue
        kept.append(line)
        kept_words += len(_WORD.findall(line))
    return kept


def _word_total(lines: list[str]) -> int:
    return sum(len(_WORD.findall(line)) for line in lines)


def _clean_body(body: str, settings: TextSettings) -> str:
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept = _kept_lines(lines, settings, settings.trim_quotes)
    if settings.recover_lost_text and settings.trim_quotes and _word_total(kept) < _FORWARD_WORDS:
        # A forward ("----- Original Message -----" first) or a message sent as one quote: the
        # quoted text is the message, and dropping it left the model only a subject.
        forwarded = _kept_lines([_QUOTE_MARKS.sub("", line) for line in lines], settings, trim_quotes=False)
        if _word_total(forwarded) > _word_total(kept):
            kept = forwarded
    text = "\n".join(kept)
    if settings.shorten_urls:
        text = _URL.sub(lambda m: " " + m.group(1).lower().removeprefix("www.") + " ", text)
        if settings.recover_lost_text:
            text = _MAILTO.sub(lambda m: " " + m.group(1).lower() + " ", text)
        text = _EMAIL.sub(lambda m: " " + m.group(1).lower() + " ", text)
    text = _SPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def _head_and_tail(text: str, head: int, tail: int) -> str:
    words = list(_WORD.finditer(text))
    if len(words) <= head + tail:
        return text
    head_end = words[head - 1].end() if head else 0
    tail_start = words[len(words) - tail].start() if tail else len(text)
    return text[:head_end] + " … " + text[tail_start:]


def build_text(message: ParsedMessage, settings: TextSettings) -> str:
    """Subject, sender name and domain, selected headers, then the cleaned and shortened body."""
    lines = [f"Subject: {_SPACE.sub(' ', message.subject).strip()}"]
    sender = _SPACE.sub(" ", message.from_name).strip().strip('"')
    domain = message.from_domain
    lines.append(f"From: {sender} ({domain})" if sender else f"From: ({domain})")
    names = settings.headers
    if settings.all_headers:
        names = tuple(n for n in message.headers if n not in ("subject", "from") and not n.startswith("x-spam"))
    for name in names:
        for value in message.headers.get(name, [])[:3]:
            value = _SPACE.sub(" ", value).strip()
            if settings.shorten_urls:
                value = _URL.sub(lambda m: m.group(1).lower(), value)
            lines.append(f"{name}: {value[:300]}")
    body = _clean_body(message.body_text, settings)
    if not body and message.attachments:
        # Image-only spam has no text; the attachment types are then the only content.
        body = "attachments: " + ", ".join(a.content_type for a in message.attachments[:5])
    lines.append("")
    lines.append(_head_and_tail(body, settings.head_words, settings.tail_words))
    return "\n".join(lines)
