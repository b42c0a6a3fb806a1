"""Junk the person left alone: spam the daemon filed that nobody moved out in time is a spam label.

Corrections alone teach a filter only its mistakes. Everything it filed correctly stays
unlabelled, so a model that starts on someone else's mail never learns what *this* mailbox's
spam looks like, and its token statistics keep ranking new spam campaigns by last year's words.
SpamAssassin and Rspamd users are told to feed their Junk folder to the learner for that reason
(``sa-learn --spam Junk``); the day-one bootstrap does it once, and this does it continuously.

A message the filing stage moved into Junk (``mail_actions``: verdict spam, done) that has no
label ``junk_grace_days`` later becomes a ``left_in_junk`` spam label, weight :data:`WEIGHT`
(recorded; retraining counts labels alike). A person who rescues a message within the grace
period gives it a ham label (``user_move``), so it is never counted here; one who deletes it from
Junk confirms it. These labels train, but never judge a candidate at the promotion gate
(``labels.SELF_SOURCES``): the version that filed them would look right by construction.

The correction tracker calls :func:`record_left_in_junk` at the end of each complete look at the
mailbox, so every move made since the previous look is already recorded when the rule runs,
also after the daemon was stopped for longer than the grace period.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

SOURCE = "left_in_junk"
WEIGHT = 0.5
"""Implicit evidence weighs less than a person's move (as mail from a known correspondent does)."""

RECORD_SQL = text(
    """
    INSERT INTO spam_labels (message_id, label, source, detail, weight, account_id)
    SELECT m.id, 'spam', :source,
           'filed to Junk ' || to_char(a.done_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC and not moved out',
           :weight, m.account_id
      FROM mail_actions a
      JOIN messages m ON m.id = a.message_id
     WHERE m.account_id = :account_id
       AND a.verdict = 'spam' AND a.status = 'done' AND a.destination = '\\Junk'
       AND a.done_at < now() - make_interval(secs => :grace_seconds)
       AND NOT EXISTS (SELECT 1 FROM spam_labels l WHERE l.message_id = m.id)
    RETURNING message_id
    """
)


def record_left_in_junk(session: Session, account_id: int, grace_days: float) -> list[int]:
    """Label as spam the account's messages filed to Junk over ``grace_days`` ago and never labelled.

    Runs inside the caller's transaction; returns the ids of the newly labelled messages.
    ``grace_days`` 0 turns the rule off (nothing is recorded).
    """
    if grace_days <= 0:
        return []
    rows = session.execute(RECORD_SQL, {"source": SOURCE, "weight": WEIGHT, "account_id": account_id,
                                        "grace_seconds": grace_days * 86400.0})
    return [int(r.message_id) for r in rows]
