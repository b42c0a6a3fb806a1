"""Day counts in the configuration, written ``"7d"``, and the start point of ingestion.

Both ``[accounts] start_from`` and ``[drafts] max_age`` count whole days: IMAP's ``SEARCH SINCE``
(which the start window uses) only knows dates, and a draft's age limit is about days, not
minutes. One spelling for both keeps the file easy to read; the parsers live here so the account
and the drafts sections validate them the same way.
"""

from __future__ import annotations

import re

_DAYS = re.compile(r"^([0-9]{1,5})d$")
MAX_DAYS = 36_500  # a hundred years: anything longer is a typo

START_FORMS = (
    '"new" (the default: only mail that arrives after the first connect), "all" (everything already '
    'in the folder) or a window of days such as "7d" or "30d" (mail received within that many days '
    "before the first connect); applied once per folder, on its first connect"
)
MAX_AGE_FORMS = (
    'a number of days such as "7d" (the default) or "30d": no draft for mail older than that by its '
    'Date header, else by when it was received; or "off" for no limit'
)


def parse_days(value: str) -> int | None:
    """``"7d"`` → 7 (case and surrounding blanks ignored); None when ``value`` is not of that form."""
    match = _DAYS.match(value.strip().lower())
    if match is None:
        return None
    days = int(match.group(1))
    return days if 1 <= days <= MAX_DAYS else None


def normalize_start_from(value: str) -> str:
    """``"new"``, ``"all"`` or ``"<N>d"``, lower-case; ValueError (worded for the admin) otherwise."""
    cleaned = value.strip().lower()
    if cleaned in ("new", "all") or parse_days(cleaned) is not None:
        return cleaned
    raise ValueError(f"{value!r} is not a start point")


def normalize_max_age(value: str) -> str:
    """``"<N>d"`` or ``"off"``, lower-case; ValueError (worded for the admin) otherwise."""
    cleaned = value.strip().lower()
    if cleaned == "off" or parse_days(cleaned) is not None:
        return cleaned
    raise ValueError(f"{value!r} is not an age")
