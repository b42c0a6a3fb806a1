"""What a reviewer does to a draft: approve, edit, reject.

Each action is the same UPDATE a person would type in ``psql``; the triggers in
``daemon.review.schema`` check the transition, stamp who and when, mark edits and announce the
change. So the CLI, the web page and plain SQL share one set of rules, and a refused change
comes back here as a ``ReviewError`` with the trigger's message for a person.

The caller owns the transaction (``with db.session() as s, s.begin(): approve(s, ...)``); each
action runs in a savepoint, so a refused one leaves the caller's transaction usable.
"""

from __future__ import annotations

from typing import Any

import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from daemon.drafts.tables import REWRITABLE, Draft
from daemon.learning.labels import record_label
from daemon.review.schema import REVIEWER_SETTING


class ReviewError(Exception):
    """A review action that cannot be done (unknown draft, refused transition, empty text)."""


def approve(session: Session, draft_id: int, reviewer: str, text: str | None = None) -> Draft:
    """Approve the draft, with ``text`` replacing the draft's text first when given."""
    values: dict[str, Any] = {"status": "approved"}
    if text is not None:
        values["text"] = _checked_text(text)
    return _update(session, draft_id, reviewer, values)


def edit(session: Session, draft_id: int, reviewer: str, text: str) -> Draft:
    """Replace the draft's text; it stays pending (or needs_human) until someone approves it."""
    return _update(session, draft_id, reviewer, {"text": _checked_text(text)})


def reject(session: Session, draft_id: int, reviewer: str, reason: str) -> Draft:
    """Reject the draft: it is never delivered. The reason is kept for the learning loop."""
    if not reason.strip():
        raise ReviewError("give a reason for rejecting the draft")
    return _update(session, draft_id, reviewer, {"status": "rejected", "reject_reason": reason.strip()})


def junk(session: Session, draft_id: int, reviewer: str) -> Draft:
    """Reject the draft because its message is spam, and record that as a spam label.

    Unsure mail is drafted in support mailboxes so that no customer question is lost; the reviewer
    who sees a spam there corrects the filter with the same click, as moving it to Junk would.
    """
    status = session.execute(select(Draft.status).where(Draft.id == draft_id).with_for_update()).scalar_one_or_none()
    if status is not None and status not in REWRITABLE:  # junking twice must not add a second label
        raise ReviewError(f"draft {draft_id} is {status}: only a draft awaiting review can be junked")
    draft = _update(session, draft_id, reviewer, {"status": "rejected", "reject_reason": JUNK_REASON})
    record_label(session, draft.message_id, "spam", "review", detail=f"draft {draft_id} junked by {reviewer.strip()}")
    return draft


JUNK_REASON = "spam"


def _checked_text(text: str) -> str:
    if not text.strip():
        raise ReviewError("the reply text is empty")
    return text


def _update(session: Session, draft_id: int, reviewer: str, values: dict[str, Any]) -> Draft:
    if not reviewer.strip():
        raise ReviewError("name the reviewer")
    try:
        with session.begin_nested():
            session.execute(select(func.set_config(REVIEWER_SETTING, reviewer.strip(), True)))
            updated = session.execute(
                update(Draft).where(Draft.id == draft_id).values(**values).returning(Draft.id)
            ).scalar_one_or_none()
    except sa_exc.DBAPIError as error:
        raise _review_error(error) from error
    if updated is None:
        raise ReviewError(f"there is no draft {draft_id}")
    return session.execute(
        select(Draft).where(Draft.id == draft_id).execution_options(populate_existing=True)
    ).scalar_one()


def _review_error(error: sa_exc.DBAPIError) -> Exception:
    """The trigger's message and hint as a ``ReviewError``; other database errors pass through."""
    original = error.orig
    if isinstance(original, psycopg.errors.CheckViolation) and original.diag.message_primary:
        hint = original.diag.message_hint
        return ReviewError(original.diag.message_primary + (f" ({hint})" if hint else ""))
    return error
