"""The retrieval query of an email: subject plus the new text of the body.

Quoted history answers a *previous* question and signatures/disclaimers are about the
sender, not the problem, so both only pull retrieval away from what is asked now. Cleaning
is deliberately conservative about what it keeps (everything above the first quote marker
that is not a greeting, sign-off or disclaimer) and aggressive about what follows a reply
header: in top-posted mail everything below "On ... wrote:" is history.

Pure functions on strings; nothing here logs, since the input is message text.
"""

from __future__ import annotations

import re

MAX_QUERY_CHARS = 2000

# A line that starts the quoted history: everything from it on is dropped.
_REPLY_HEADERS = [
    re.compile(r"^\s*On\b.{0,300}\bwrote:\s*$", re.IGNORECASE),  # Gmail/Apple/Thunderbird (may wrap, see below)
    re.compile(r"^\s*Am\b.{0,300}\bschrieb\b.{0,80}:\s*$", re.IGNORECASE),
    re.compile(r"^\s*Le\b.{0,300}\ba écrit\s*:\s*$", re.IGNORECASE),
    re.compile(r"^\s*-{2,}\s*(?:Original Message|Forwarded message|Ursprüngliche Nachricht)\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*Begin forwarded message:\s*$", re.IGNORECASE),
    re.compile(r"^\s*_{20,}\s*$"),  # Outlook's rule above the "From:" block
]
# Outlook without a separator: "From: ..." followed within a few lines by "Sent:", "To:", "Subject:".
_HEADER_BLOCK_START = re.compile(r"^\s*\*?(?:From|Von|De)\s*:\*?\s+\S", re.IGNORECASE)
_HEADER_BLOCK_FIELD = re.compile(r"^\s*\*?(?:Sent|Date|To|Subject|Cc|Gesendet|An|Betreff|Envoyé|À|Objet)\s*:", re.I)

_SIGNATURE_DELIMITER = re.compile(r"^(?:--|__)\s*$")
_MOBILE_FOOTER = re.compile(r"^\s*(?:Sent from my|Get Outlook for|Sent from Mail for|Von meinem)\b", re.I)
_SIGN_OFF = re.compile(
    r"^\s*(?:(?:best|kind|warm|many)?\s*(?:regards|wishes)|best|cheers|thanks(?: again| in advance| a lot)?|"
    r"thank you(?: in advance| very much| so much)?|many thanks|sincerely|yours(?: truly| sincerely)?|"
    r"all the best|take care|greetings|br|mfg|viele grüße|liebe grüße|cordialement)\s*[,.!]*\s*$",
    re.IGNORECASE,
)
_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|greetings|hallo|bonjour)\b"
    r"[^.?!\n]{0,60}[,:!]?\s*$",
    re.IGNORECASE,
)
_DISCLAIMER = re.compile(
    r"\b(?:confidential|privileged|"
    r"intended (?:solely |only )?for the (?:use of the )?(?:addressee|recipient)|"
    r"if you (?:are not|have received this)|disclaimer|virus[- ]free|unsubscribe|do not print this)\b",
    re.IGNORECASE,
)
_SUBJECT_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|tr|antw)\s*(?:\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_SUBJECT_TAG = re.compile(r"\[[^\]]{0,40}\]|\((?:ticket|case)\s*#?\s*\d+\)", re.IGNORECASE)


def clean_subject(subject: str) -> str:
    """Drop reply/forward prefixes and ticket tags: ``Re: [Ticket #42] Wifi`` → ``Wifi``."""
    previous = None
    while previous != subject:
        previous = subject
        subject = _SUBJECT_TAG.sub(" ", _SUBJECT_PREFIX.sub("", subject))
    return " ".join(subject.split())


def strip_quoted(body: str) -> str:
    """The text above the quoted history, with ``>`` lines removed wherever they are (inline replies)."""
    lines = body.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _is_reply_header(lines, i):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept)


def split_quoted(body: str) -> tuple[str, str]:
    """The new text and the quoted history below it (from the first reply header or trailing ``>`` block).

    For showing a message with its history folded away; unlike ``strip_quoted`` nothing is dropped.
    """
    lines = body.replace("\r\n", "\n").split("\n")
    start = next((i for i in range(len(lines)) if _is_reply_header(lines, i)), None)
    if start is None:  # no reply header: only a block of ">" lines at the end counts as history
        start = len(lines)
        while start > 0 and (lines[start - 1].lstrip().startswith(">") or not lines[start - 1].strip()):
            start -= 1
        if not any(line.lstrip().startswith(">") for line in lines[start:]):
            start = len(lines)
    return "\n".join(lines[:start]).rstrip(), "\n".join(lines[start:]).strip("\n")


def _is_reply_header(lines: list[str], i: int) -> bool:
    line = lines[i]
    if any(p.match(line) for p in _REPLY_HEADERS):
        return True
    # "On Tue, 3 Nov 2026, Jane <jane@example.com>" + "wrote:" on the next line (clients wrap at 76-78).
    if re.match(r"^\s*On\b", line, re.I) and i + 1 < len(lines) and re.match(r"^.{0,120}\bwrote:\s*$", lines[i + 1]):
        return True
    if _HEADER_BLOCK_START.match(line):
        window = lines[i + 1 : i + 5]
        return sum(bool(_HEADER_BLOCK_FIELD.match(w)) for w in window) >= 2
    return False


def strip_signature(body: str) -> str:
    """Cut at the ``-- `` delimiter, a mobile footer, or a sign-off line near the end."""
    lines = body.split("\n")
    for i, line in enumerate(lines):
        if _SIGNATURE_DELIMITER.match(line) or _MOBILE_FOOTER.match(line):
            lines = lines[:i]
            break
    # A sign-off ("Thanks,", "Best regards") followed only by a short block (name, title, phone).
    for i in range(len(lines) - 1, -1, -1):
        if _SIGN_OFF.match(lines[i]):
            tail = [t for t in lines[i + 1 :] if t.strip()]
            if len(tail) <= 6 and all(len(t) <= 80 for t in tail):
                lines = lines[:i]
            break
    return "\n".join(lines)


def strip_disclaimer(body: str) -> str:
    """Drop paragraphs that read like legal footers (confidentiality notices, virus-scan lines)."""
    paragraphs = re.split(r"\n\s*\n", body)
    return "\n\n".join(p for p in paragraphs if not _is_disclaimer(p))


def _is_disclaimer(paragraph: str) -> bool:
    hits = len(_DISCLAIMER.findall(paragraph))
    return hits >= 2 or (hits == 1 and paragraph.strip().isupper())


def strip_greeting(body: str) -> str:
    lines = body.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if _GREETING.match(line):
            del lines[i]
        break
    return "\n".join(lines)


def new_text(body: str) -> str:
    """The part of a body that the sender wrote now, without greeting, signature or legal footer."""
    text = strip_quoted(body)
    text = strip_signature(text)
    text = strip_disclaimer(text)
    text = strip_greeting(text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def build_query(subject: str | None, body: str | None) -> str:
    """Subject and new body text, the subject left out when the body already contains it."""
    subject = clean_subject(subject or "")
    text = new_text(body or "")
    if subject and subject.lower() not in text.lower():
        text = f"{subject}\n{text}" if text else subject
    return text[:MAX_QUERY_CHARS].strip()
