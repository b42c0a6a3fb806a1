"""Spam/ham labels: what a person (or the mailbox itself) says a stored message is.

Labels are appended, never changed: the newest label of a message counts (``daemon.training.data``
reads it that way), and the history explains how it got there. Each label keeps where it came from
(``source``), what happened (``detail``, e.g. "moved from Junk to INBOX"), when, and how much it
weighs: a person's move counts fully, implicit evidence (mail from someone the account wrote to) less.

A correction is recorded whatever the model thought of the message, also when it was confident:
refusing those ("already learned") is exactly how a filter keeps repeating its mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

LABELS = ("spam", "ham")
# The sources a label may name; `mailsense status` counts by them.
SOURCES = ("user_move", "client_keyword", "replied_thread", "wrote_to_sender", "left_in_junk", "bootstrap", "cli",
           "review", "import")
# A person said so explicitly; implicit sources never overrule one of these.
EXPLICIT_SOURCES = frozenset({"user_move", "client_keyword", "cli", "review"})
# Made from the model's own verdict (Junk the person left alone): they train, but never judge a model
# at the promotion gate, where the version that filed them would look right by construction.
SELF_SOURCES = frozenset({"left_in_junk"})

INSERT_SQL = text(
    """
    INSERT INTO spam_labels (message_id, label, source, detail, weight, account_id)
    SELECT m.id, :label, :source, :detail, :weight, m.account_id FROM messages m WHERE m.id = :message_id
    RETURNING id
    """
)

NEWEST_SQL = text(
    """
    SELECT DISTINCT ON (message_id) message_id, label, source
      FROM spam_labels
     WHERE message_id = ANY(:ids)
     ORDER BY message_id, id DESC
    """
)

COUNTS_SQL = text(
    """
    SELECT COALESCE(a.name, '?') AS account, l.source, l.label, count(*) AS n, max(l.created_at) AS newest
      FROM spam_labels l
      LEFT JOIN accounts a ON a.id = l.account_id
     GROUP BY 1, 2, 3
     ORDER BY 1, 2, 3
    """
)

# The newest label per message, counted by class: what a training run would see.
EFFECTIVE_SQL = text(
    """
    SELECT label, count(*) AS n
      FROM (SELECT DISTINCT ON (message_id) label FROM spam_labels ORDER BY message_id, id DESC) newest
     GROUP BY label
    """
)


BOOTSTRAPS_SQL = text(
    """
    SELECT a.name AS account, b.started_at, b.finished_at, b.spam, b.ham
      FROM learning_bootstraps b JOIN accounts a ON a.id = b.account_id
     ORDER BY a.name
    """
)


class LabelError(ValueError):
    """A label that cannot be recorded; the text says which value is wrong."""


@dataclass(frozen=True)
class Newest:
    label: str
    source: str

    @property
    def explicit(self) -> bool:
        return self.source in EXPLICIT_SOURCES


def record_label(
    session: Session,
    message_id: int,
    label: str,
    source: str,
    detail: str | None = None,
    weight: float = 1.0,
) -> int:
    """Append a label for stored message ``message_id`` inside the caller's transaction; return its id."""
    if label not in LABELS:
        raise LabelError(f"label {label!r}: expected 'spam' or 'ham'")
    if source not in SOURCES:
        raise LabelError(f"label source {source!r}: expected one of {', '.join(SOURCES)}")
    if not 0.0 < weight <= 10.0:
        raise LabelError(f"label weight {weight}: expected a number above 0 and at most 10")
    row_id = session.execute(INSERT_SQL, {"message_id": message_id, "label": label, "source": source,
                                          "detail": detail[:500] if detail else None, "weight": weight}
                             ).scalar_one_or_none()
    if row_id is None:
        raise LabelError(f"no stored message with id {message_id}")
    return int(row_id)


def newest_labels(session: Session, message_ids: list[int]) -> dict[int, Newest]:
    """The label that counts now for each of ``message_ids`` that has one."""
    if not message_ids:
        return {}
    return {int(r.message_id): Newest(r.label, r.source) for r in session.execute(NEWEST_SQL, {"ids": message_ids})}


def label_counts(session: Session) -> list[dict[str, object]]:
    """Labels by account, source and class, with the time of the newest (for ``mailsense status``)."""
    return [dict(r._mapping) for r in session.execute(COUNTS_SQL)]


def label_totals(session: Session) -> list[dict[str, object]]:
    """The newest label per message, counted by class: what a training run would see."""
    return [dict(r._mapping) for r in session.execute(EFFECTIVE_SQL)]


def bootstraps(session: Session) -> list[dict[str, object]]:
    """Each account's day-one bootstrap: when, and how many labels it gave."""
    return [dict(r._mapping) for r in session.execute(BOOTSTRAPS_SQL)]


def render_bootstraps(rows: list[dict[str, object]]) -> list[str]:
    lines = []
    for row in rows:
        finished = row["finished_at"]
        if isinstance(finished, datetime):
            lines.append(f"    {row['account']} / bootstrap: done {finished:%Y-%m-%d %H:%M}, "
                         f"spam {row['spam']}, ham {row['ham']} labelled")
        else:
            lines.append(f"    {row['account']} / bootstrap: running since {row['started_at']:%Y-%m-%d %H:%M}")
    return lines


def render_counts(by_source: list[dict[str, object]], totals: list[dict[str, object]]) -> list[str]:
    """Status lines: what training would use, then per account and source "spam 3, ham 12"."""
    if not by_source:
        return ["labels: none yet (corrections in the mailbox, `mailsense learn`, [accounts.learning] bootstrap)"]
    total = {str(r["label"]): r["n"] for r in totals}
    lines = [f"labels: spam {total.get('spam', 0)}, ham {total.get('ham', 0)} (the newest label of each message)"]
    grouped: dict[tuple[str, str], dict[str, object]] = {}
    for row in by_source:
        entry = grouped.setdefault((str(row["account"]), str(row["source"])), {})
        entry[str(row["label"])] = row["n"]
        when = row["newest"]
        if isinstance(when, datetime) and (not isinstance(entry.get("at"), datetime) or when > entry["at"]):  # type: ignore[operator]
            entry["at"] = when
    for (account, source), entry in sorted(grouped.items()):
        at = entry.get("at")
        lines.append(f"    {account} / {source}: spam {entry.get('spam', 0)}, ham {entry.get('ham', 0)}"
                     + (f", newest {at:%Y-%m-%d %H:%M}" if isinstance(at, datetime) else ""))
    return lines
