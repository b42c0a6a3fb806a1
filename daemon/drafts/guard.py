"""The last line against quoting internal knowledge: a draft that repeats internal text is dropped.

Internal chunks never reach the extractive backend and reach a language model only when
``drafts.llm_sees_internal`` allows it; but a model can be talked into repeating what it
saw, so every draft is checked, whatever produced it. The check is verbatim overlap of word
6-grams (shingles) with the internal chunks retrieved for the message, ignoring shingles
that also occur in the public sources (text both audiences share is public).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SHINGLE = 6
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def shingles(text: str, size: int = SHINGLE) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    if len(words) < size:
        return {tuple(words)} if len(words) >= 3 else set()
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def leaks_internal(draft: str, internal: Iterable[str], public: Iterable[str] = ()) -> bool:
    """Whether ``draft`` repeats a run of six words (or a whole short note) from internal text."""
    secret: set[tuple[str, ...]] = set()
    for text in internal:
        secret |= shingles(text)
    for text in public:
        secret -= shingles(text)
    if not secret:
        return False
    draft_words = _WORD.findall(draft.lower())
    joined = " " + " ".join(draft_words) + " "
    for item in secret:
        if len(item) < SHINGLE and " " + " ".join(item) + " " in joined:  # a whole short note
            return True
    return bool(shingles(draft) & secret)
