"""``mailsense drafts ...``: list and show reply drafts, and why messages got none; lines for ``mailsense status``.

Read-only for now: approving, editing and sending belong to the review surface.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from daemon.db.session import Database
from daemon.drafts.eligibility import SKIP_RULES
from daemon.drafts.tables import STATUSES, Draft, DraftSkip

if TYPE_CHECKING:
    from sqlalchemy import Select

    from daemon.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drafts = subparsers.add_parser("drafts", help="reply drafts waiting for review").add_subparsers(
        dest="drafts_command", required=True
    )
    lst = drafts.add_parser("list", help="drafts, newest first (--skipped: messages that got none, and why)")
    lst.add_argument("--status", choices=STATUSES, help="only drafts with this status")
    lst.add_argument("--skipped", action="store_true",
                     help="messages the draft stage skipped (lists, auto-replies, our own mail...) with the reason")
    lst.add_argument("--rule", choices=SKIP_RULES, help="with --skipped: only this rule")
    lst.add_argument("-n", "--limit", type=int, default=50, help="at most this many (default 50)")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=cmd_list)

    show = drafts.add_parser("show", help="one draft: message, text, sources, confidence")
    show.add_argument("id", type=int, help="draft id (see `drafts list`)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)



def _rows(db: Database, status: str | None, limit: int) -> list[dict[str, object]]:
    from daemon.db.tables import Message

    query = (
        select(
            Draft.id, Draft.status, Draft.confidence, Draft.backend, Draft.created_at, Draft.message_id,
            Message.subject, Message.from_addr, Draft.reason,
        )
        .join(Message, Message.id == Draft.message_id)
        .order_by(Draft.id.desc())
        .limit(limit)
    )
    if status:
        query = query.where(Draft.status == status)
    return _fetch(db, query)


def _skipped_rows(db: Database, rule: str | None, limit: int) -> list[dict[str, object]]:
    from daemon.db.tables import Message

    query = (
        select(
            DraftSkip.message_id, DraftSkip.rule, DraftSkip.reason, DraftSkip.updated_at,
            Message.subject, Message.from_addr,
        )
        .join(Message, Message.id == DraftSkip.message_id)
        .order_by(DraftSkip.message_id.desc())
        .limit(limit)
    )
    if rule:
        query = query.where(DraftSkip.rule == rule)
    return _fetch(db, query)


def _fetch(db: Database, query: Select[*tuple[Any, ...]]) -> list[dict[str, object]]:
    with db.session() as s:
        return [dict(r._mapping) for r in s.execute(query)]


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    if args.rule and not args.skipped:
        print("--rule needs --skipped")
        return 2
    if args.status and args.skipped:
        print("--status is for drafts; skipped messages have none")
        return 2
    db = Database.open(settings, writable=False)
    try:
        rows = _skipped_rows(db, args.rule, args.limit) if args.skipped else _rows(db, args.status, args.limit)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    for r in rows:
        subject = " ".join(str(r["subject"] or "(no subject)").split())[:50]
        if args.skipped:
            print(f"message {r['message_id']:>6}  {subject:<50}  {r['from_addr'] or '':<30}  no draft: {r['reason']}")
            continue
        why = f"  ({r['reason']})" if r["reason"] else ""
        print(f"{r['id']:>6}  {r['status']:<11}  {r['confidence']:.2f}  {r['backend']:<10}  "
              f"{subject:<50}  {r['from_addr'] or ''}{why}")
    print(f"{len(rows)} {'skipped message(s)' if args.skipped else 'draft(s)'}")
    return 0


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.db.tables import Message

    db = Database.open(settings, writable=False)
    try:
        with db.session() as s:
            draft = s.get(Draft, args.id)
            message = s.get(Message, draft.message_id) if draft else None
    finally:
        db.dispose()
    if draft is None or message is None:
        print(f"no draft {args.id}")
        return 1
    data = {
        "id": draft.id,
        "message_id": draft.message_id,
        "subject": message.subject,
        "from": f"{message.from_name} <{message.from_addr}>" if message.from_name else message.from_addr,
        "status": draft.status,
        "confidence": draft.confidence,
        "reason": draft.reason,
        "backend": draft.backend,
        "model": draft.model,
        "edited_by_human": draft.edited_by_human,
        "created_at": draft.created_at,
        "updated_at": draft.updated_at,
        "text": draft.text,
        "citations": draft.citations,
    }
    if args.json:
        print(json.dumps(data, default=str, indent=2))
        return 0
    print(f"draft {draft.id} for message {draft.message_id}: {draft.status}, confidence {draft.confidence:.2f}"
          f" ({draft.backend}, {draft.model})")
    print(f"Subject: {message.subject or ''}\nFrom: {data['from'] or ''}")
    if draft.reason:
        print(f"Why a person is needed: {draft.reason}")
    if draft.edited_by_human:
        print(f"Edited by a person at {draft.edited_at}")
    print()
    print(draft.text if draft.text is not None else "(no text: write the reply from the sources below)")
    print("\nSources:")
    for c in draft.citations:
        mark = "quoted" if c.get("quoted") else ("internal, never quoted" if c.get("audience") != "public" else "")
        similarity = c.get("similarity")
        sim = f"similarity {similarity:.2f}" if similarity is not None else "full text only"
        print(f"  [{c['n']}] {c.get('heading_path') or c.get('title')}  (document {c['document_id']}, "
              f"chunk {c['chunk_id']}, {sim}){'  ' + mark if mark else ''}")
    return 0


def status_lines(settings: Settings, db: Database) -> list[str]:
    """For ``mailsense status``: ``drafts: pending 3, needs_human 1`` and, when messages were
    skipped, ``no draft: mailing_list 12, automated 2 (...)`` counted by rule."""
    with db.session() as s:
        counts = dict(s.execute(select(Draft.status, func.count()).group_by(Draft.status)).all())
        skipped = dict(s.execute(select(DraftSkip.rule, func.count()).group_by(DraftSkip.rule)).all())
    if not counts:
        lines = ["drafts: none yet" + ("" if settings.drafts.enabled else " (drafting is off: [drafts] enabled)")]
    else:
        lines = ["drafts: " + ", ".join(f"{status} {counts[status]}" for status in STATUSES if status in counts)]
    if skipped:
        ordered = sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append("no draft: " + ", ".join(f"{rule} {n}" for rule, n in ordered)
                     + " (why: `mailsense drafts list --skipped`)")
    return lines
