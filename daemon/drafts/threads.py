"""Conversations: which thread a message belongs to, and superseding the older draft in it.

A customer who writes again before anyone answered should get one reply, to the newest mail:
the pending draft for the earlier message is marked ``superseded`` (``superseded_by`` = the new
draft) in the same transaction that writes the new draft, so the review queue never shows two
drafts for one conversation.

A thread is recognised by its ``thread_key``, the root Message-ID (the first of ``References``,
else ``In-Reply-To``, else the message's own Message-ID), or by the new message naming the
older one in ``References``/``In-Reply-To`` (clients truncate long ``References``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from daemon.mail.mime import message_ids


@dataclass(frozen=True)
class Thread:
    """Where a message sits in its conversation."""

    key: str | None  # root Message-ID
    references: tuple[str, ...]  # Message-IDs this message answers (References, then In-Reply-To)


def thread_of(message_id: str | None, headers: Mapping[str, Sequence[str]] | None) -> Thread:
    """The thread from the parsed headers (keys lower-case, as the parse stage stores them)."""
    headers = headers or {}
    references = message_ids(headers.get("references", ()))
    for found in message_ids(headers.get("in-reply-to", ())):
        if found not in references:
            references.append(found)
    own = message_ids([message_id or ""])
    key = references[0] if references else (own[0] if own else None)
    return Thread(key, tuple(references))




# The older message must be older: requeueing an old message never supersedes a newer draft.
_INHERITED_KEY_SQL = text("""
SELECT d.thread_key FROM drafts d JOIN messages m ON m.id = d.message_id
WHERE m.account_id = (SELECT account_id FROM messages WHERE id = :message_id)
  AND m.message_id = ANY(:refs) AND d.thread_key IS NOT NULL
ORDER BY m.id LIMIT 1
""")

_SUPERSEDE_SQL = text("""
UPDATE drafts d SET status = 'superseded', superseded_by = :draft_id
FROM messages m, messages new
WHERE new.id = :message_id AND m.id = d.message_id AND d.id <> :draft_id
  AND d.status IN ('pending', 'needs_human')
  AND m.account_id = new.account_id
  AND (d.thread_key = :thread_key OR m.message_id = ANY(:refs))
  AND (coalesce(m.sent_at, m.received_at), m.id) < (coalesce(new.sent_at, new.received_at), new.id)
RETURNING d.id
""")


# Drafted out of order (a retry, two workers): a newer message of the thread already has a draft,
# so this one is superseded at once.
_SUPERSEDED_BY_NEWER_SQL = text("""
UPDATE drafts d SET status = 'superseded', superseded_by = newer.id
FROM (SELECT d2.id FROM drafts d2 JOIN messages m2 ON m2.id = d2.message_id, messages this
      WHERE this.id = :message_id AND d2.id <> :draft_id AND m2.account_id = this.account_id
        AND d2.thread_key = :thread_key AND d2.status <> 'superseded'
        AND (coalesce(m2.sent_at, m2.received_at), m2.id) > (coalesce(this.sent_at, this.received_at), this.id)
      ORDER BY m2.id DESC LIMIT 1) newer
WHERE d.id = :draft_id AND d.status IN ('pending', 'needs_human')
RETURNING newer.id
""")


def thread_key_for(session: Session, message_id: int, thread: Thread) -> str | None:
    """The key of the conversation: that of a draft for a message this one answers, else the root."""
    if thread.references:
        inherited = session.execute(
            _INHERITED_KEY_SQL, {"message_id": message_id, "refs": list(thread.references)}
        ).scalar_one_or_none()
        if inherited:
            return str(inherited)
    return thread.key


def supersede_older(session: Session, message_id: int, draft_id: int, thread_key: str | None,
                    thread: Thread) -> list[int]:
    """Mark the thread's older drafts awaiting review as superseded by ``draft_id``; their ids."""
    if thread_key is None and not thread.references:
        return []
    rows = session.execute(_SUPERSEDE_SQL, {
        "draft_id": draft_id, "message_id": message_id, "thread_key": thread_key, "refs": list(thread.references),
    })
    return [int(r) for r in rows.scalars()]


def supersede_if_newer_exists(session: Session, message_id: int, draft_id: int, thread_key: str | None) -> int | None:
    """Supersede ``draft_id`` itself when a later message of its thread has a draft; that draft's id."""
    if thread_key is None:
        return None
    newer = session.execute(_SUPERSEDED_BY_NEWER_SQL, {
        "draft_id": draft_id, "message_id": message_id, "thread_key": thread_key,
    }).scalar_one_or_none()
    return None if newer is None else int(newer)
