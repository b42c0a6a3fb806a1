"""The last line against quoting internal knowledge, and against links the knowledge base does not have.

Internal chunks never reach the extractive backend and reach a language model only when
``drafts.llm_sees_internal`` allows it; but a model can be talked into repeating what it
saw, so every draft is checked, whatever produced it. Text that internal and public sources
share is public and never counts. Three checks, each cheap and explainable to a reviewer:

* **runs of words**: six words in a row from an internal chunk, after normalising the text
  (Unicode compatibility forms, zero-width characters removed, letters spaced out
  ``e x t e n s i o n`` joined back), or a whole short internal note;
* **runs with words inserted**: five content words of an internal chunk in their order inside
  a window of ten content words of the draft, so padding a copied sentence does not hide it;
* **distinctive tokens**: numbers, codes, addresses, host names and proper names of the internal
  text (a phone extension, an internal URL, a colleague, a tool) that no public source contains,
  also when spelled with spaces or dots between the letters.

A paraphrase without any of these, or a translation, is not caught: ``bench/guard_eval.py``
measures how often, and the reviewer reads every draft before anything is sent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

SHINGLE = 6
GAPPED_RUN = 5  # content words of an internal run, of which ...
GAPPED_MATCH = 4  # ... at least this many are found in order ...
GAPPED_WINDOW = 10  # ... within this many content words of the draft
COMPACT_MIN = 4  # distinctive tokens this long also match with spacing removed ("4 7 1 1")

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_ZERO_WIDTH = re.compile("[\u200b-\u200f\u2060\ufeff\u00ad]")
# Three or more single characters separated by one space or punctuation: "e x t e n s i o n", "4-7-1-1".
_SPACED = re.compile(r"(?<![^\W_])(?:[^\W_][ .\-_*]){2,}[^\W_](?![^\W_])", re.UNICODE)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\"']+", re.IGNORECASE)
_DISTINCTIVE = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail addresses
    r"|\b(?:[a-z0-9-]+\.)+[a-z]{2,}\b"  # host names
    r"|\b[\w-]*\d[\w-]*\b",  # anything with a digit: extensions, codes, versions, amounts
    re.IGNORECASE,
)
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "for",
    "from", "had", "has", "have", "he", "her", "his", "how", "i", "if", "in", "into", "is", "it", "its",
    "just", "me", "my", "no", "not", "of", "on", "or", "our", "please", "really", "she", "should", "so",
    "some", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those",
    "to", "too", "us", "very", "was", "we", "were", "what", "when", "where", "which", "who", "will", "with",
    "would", "you", "your", "also", "simply", "actually", "quickly", "first", "now", "here",
))


def normalise(text: str) -> str:
    """Lower-case words as a reader sees them: compatibility forms folded, spaced-out letters joined."""
    text = _ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text))
    text = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group(0)), text)
    return text.lower()


def words(text: str) -> list[str]:
    return _WORD.findall(normalise(text))


def shingles(text: str, size: int = SHINGLE) -> set[tuple[str, ...]]:
    tokens = words(text)
    if len(tokens) < size:
        return {tuple(tokens)} if len(tokens) >= 3 else set()
    return {tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 2]


_PROPER = re.compile(r"(?<=[\w,;:)] )[A-Z][\w-]{3,}")  # capitalised, not at the start of a sentence


def distinctive_tokens(text: str) -> set[str]:
    """Tokens that identify: anything with a digit, addresses, host names, names written in capitals."""
    clean = _ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text))
    found = {m.group(0).strip(".-").lower() for m in _DISTINCTIVE.finditer(normalise(clean))}
    found |= {m.group(0).lower() for m in _PROPER.finditer(clean)}
    return {t for t in found if len(t) >= 3}


def _compact(text: str) -> str:
    return "".join(ch for ch in normalise(text) if ch.isalnum())


def internal_leak(draft: str, internal: Iterable[str], public: Iterable[str] = ()) -> str | None:
    """Why ``draft`` repeats internal text (one line for the reviewer), or None when it does not."""
    internal = [t for t in internal if t.strip()]
    public = list(public)
    if not internal:
        return None
    public_shingles: set[tuple[str, ...]] = set()
    public_runs: set[tuple[str, ...]] = set()
    public_tokens: set[str] = set()
    for text in public:
        public_shingles |= shingles(text)
        public_runs |= _runs(content_words(text))
        public_tokens |= distinctive_tokens(text)

    public_words = {w for text in public for w in words(text)}
    draft_shingles = shingles(draft)
    draft_words = words(draft)
    draft_joined = " " + " ".join(draft_words) + " "
    draft_content = content_words(draft)
    draft_tokens = distinctive_tokens(draft) | set(draft_words)
    draft_compact = _compact(draft)
    for text in internal:
        secret = shingles(text) - public_shingles
        for item in secret:
            if len(item) < SHINGLE and " " + " ".join(item) + " " in draft_joined:
                return "the draft repeats a short internal note"
        if draft_shingles & secret:
            return "the draft repeated internal knowledge-base text"
        runs = _runs(content_words(text)) - public_runs
        matched = _gapped_match(draft_content, runs) if runs else None
        if matched and not any(_in_order_within(matched, content_words(p)) for p in public):
            return "the draft repeats internal knowledge-base text with words inserted"
        details = {t for t in distinctive_tokens(text) - public_tokens if t not in public_words}
        leaked = sorted(
            t for t in details
            if t in draft_tokens or (len(_compact(t)) >= COMPACT_MIN and _compact(t) in draft_compact)
        )
        if leaked:
            return f"the draft contains {len(leaked)} detail(s) found only in internal notes"
    return None


def leaks_internal(draft: str, internal: Iterable[str], public: Iterable[str] = ()) -> bool:
    return internal_leak(draft, internal, public) is not None


def _runs(tokens: Sequence[str]) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + GAPPED_RUN]) for i in range(len(tokens) - GAPPED_RUN + 1)}


def _gapped_match(draft: Sequence[str], runs: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """The words of some run (at least ``GAPPED_MATCH``) found in order within ``GAPPED_WINDOW`` draft words."""
    for start in range(len(draft)):
        window = draft[start : start + GAPPED_WINDOW]
        if len(window) < GAPPED_MATCH:
            break
        for run in runs:
            if run[0] != window[0] and run[1] != window[0]:
                continue
            found: list[str] = []
            at = 0
            for word in run:
                if word in window[at:]:
                    at = window.index(word, at) + 1
                    found.append(word)
            if len(found) >= GAPPED_MATCH:
                return tuple(found)
    return None


def _in_order_within(needle: Sequence[str], haystack: Sequence[str]) -> bool:
    """Whether ``needle``'s words occur in order within ``GAPPED_WINDOW`` words of ``haystack`` (public text)."""
    return _gapped_match(haystack, {tuple(needle)}) is not None if len(needle) >= GAPPED_MATCH else False


def foreign_links(draft: str, sources: Iterable[str]) -> list[str]:
    """Links in the draft that no knowledge-base source contains: a model's guess, or a planted URL."""
    known = {_link_key(m.group(0)) for text in sources for m in _URL.finditer(text)}
    return sorted({m.group(0).rstrip(".,;:!?") for m in _URL.finditer(draft) if _link_key(m.group(0)) not in known})


def _link_key(url: str) -> str:
    url = url.rstrip(".,;:!?)").lower()
    url = re.sub(r"^(https?://)?(www\.)?", "", url)
    return url.rstrip("/")
