"""``mailsense drafts ...``: the review queue on the command line; lines for ``mailsense status``.

``list`` and ``show`` read; ``approve``, ``edit`` and ``reject`` call ``daemon.review.actions``,
which issue the same UPDATEs as plain SQL, so the database triggers check them alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from daemon.db.session import Database
from daemon.drafts.eligibility import SKIP_RULES
from daemon.drafts.tables import STATUSES, Draft, DraftSkip
from daemon.errors import CommandError
from daemon.review import actions
from daemon.review.queue import DraftDetail, draft_detail

if TYPE_CHECKING:
    from sqlalchemy import Select

    from daemon.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    drafts = subparsers.add_parser("drafts", help="reply drafts: list, show, approve, edit, reject").add_subparsers(
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

    show = drafts.add_parser("show", help="one draft: the message, the draft, its sources with their text")
    show.add_argument("id", type=int, help="draft id (see `drafts list`)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)

    reviewer = argparse.ArgumentParser(add_help=False)
    reviewer.add_argument("--reviewer", default=None, help="your name, recorded with the decision (default: OS user)")
    reviewer.add_argument("--json", action="store_true", help="print the draft afterwards as JSON")

    approve = drafts.add_parser("approve", parents=[reviewer], help="approve a draft (optionally with a new text)")
    approve.add_argument("id", type=int)
    approve.add_argument("--text-file", type=Path, help="approve with the reply text in this file ('-' = stdin)")
    approve.set_defaults(handler=cmd_approve)

    edit = drafts.add_parser("edit", parents=[reviewer],
                             help="change a draft's text (--text-file, else $EDITOR); it stays for review")
    edit.add_argument("id", type=int)
    edit.add_argument("--text-file", type=Path, help="the new reply text ('-' = stdin)")
    edit.set_defaults(handler=cmd_edit)

    reject = drafts.add_parser("reject", parents=[reviewer], help="reject a draft: it is never delivered")
    reject.add_argument("id", type=int)
    why = reject.add_mutually_exclusive_group(required=True)
    why.add_argument("--reason", help="why (kept for the statistics and the learning loop)")
    why.add_argument("--spam", action="store_true",
                     help="the message is spam: reject the draft and teach the spam filter (a spam label)")
    reject.set_defaults(handler=cmd_reject)


# -- list ------------------------------------------------------------------------------------------

def _rows(db: Database, status: str | None, limit: int) -> list[dict[str, object]]:
    from daemon.db.tables import Message

    query = (
        select(
            Draft.id, Draft.status, Draft.confidence, Draft.backend, Draft.created_at, Draft.message_id,
            Message.subject, Message.from_addr, Message.spam_verdict, Message.spam_score, Draft.reason,
            Draft.edited_by_human, Draft.reviewed_by, Draft.reviewed_at,
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
        spam = f"  [spam {r['spam_verdict']} {r['spam_score']:.2f}]" if r["spam_verdict"] == "unsure" else ""
        print(f"{r['id']:>6}  {r['status']:<11}  {r['confidence']:.2f}  {r['backend']:<10}  "
              f"{subject:<50}  {r['from_addr'] or ''}{why}{spam}")
    print(f"{len(rows)} {'skipped message(s)' if args.skipped else 'draft(s)'}")
    if rows and not args.skipped:
        print("review one: `mailsense drafts show ID`, then `approve ID`, `edit ID` or `reject ID --reason ...`")
    return 0


# -- show ------------------------------------------------------------------------------------------

def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.open(settings, writable=False)
    try:
        with db.session() as s:
            detail = draft_detail(s, args.id)
    except actions.ReviewError as error:
        raise CommandError(str(error)) from error
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(dataclasses.asdict(detail), default=str, indent=2))
    else:
        print(render(detail))
    return 0


def render(d: DraftDetail) -> str:
    """The draft for a terminal: decision state, the customer's message, the draft, the sources."""
    lines = [f"draft {d.draft_id} for message {d.message_id}: {d.status}, confidence {d.confidence:.2f}"
             f" ({d.backend}{', ' + d.model if d.model else ''})"]
    if d.reason:
        lines.append(f"Why a person is needed: {d.reason}")
    if d.edited_by_human:
        similarity = f", {d.edit_similarity:.0%} like the generated text" if d.edit_similarity is not None else ""
        lines.append(f"Edited by a person at {d.edited_at:%Y-%m-%d %H:%M}{similarity}" if d.edited_at
                     else "Edited by a person")
    if d.reviewed_at:
        lines.append(f"{d.status.capitalize()} by {d.reviewed_by} at {d.reviewed_at:%Y-%m-%d %H:%M}"
                     + (f": {d.reject_reason}" if d.reject_reason else ""))
    if d.superseded_by:
        lines.append(f"Superseded by draft {d.superseded_by} (a later message in the conversation)")
    when = d.sent_at or d.received_at
    spam = f"{d.spam_verdict} ({d.spam_score:.2f})" if d.spam_verdict and d.spam_score is not None else "not checked"
    lines += ["", "── Message " + "─" * 50,
              f"From: {d.sender or ''}", f"Date: {when:%Y-%m-%d %H:%M}", f"Subject: {d.subject or ''}",
              f"Account: {d.account}, spam verdict {spam}", "", d.new_text or "(no text)"]
    if d.has_quoted_history:
        lines.append("[quoted history folded: `--json` has the whole text]")
    lines += ["", "── Draft " + "─" * 52,
              d.text if d.text is not None else "(no text: write the reply from the sources below, "
              f"`mailsense drafts edit {d.draft_id}`)"]
    lines += ["", "── Sources " + "─" * 50]
    for src in d.sources:
        mark = "quoted" if src.quoted else ("internal, never quoted" if src.audience != "public" else "not quoted")
        lines.append(f"[{src.n}] {src.heading_path or src.title}  ({mark})")
        body = (src.text or "(passage no longer in the knowledge base)").strip()
        lines.extend("    " + line for line in body.splitlines())
    if not d.sources:
        lines.append("(none)")
    return "\n".join(lines)


# -- approve, edit, reject -------------------------------------------------------------------------

def _reviewer(args: argparse.Namespace) -> str:
    return str(args.reviewer or getpass.getuser())


def _read_text(path: Path) -> str:
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except OSError as error:
        raise CommandError(f"cannot read --text-file {path}: {error.strerror}") from error


def _act(settings: Settings, args: argparse.Namespace, verb: str, action: Any, *extra: Any) -> int:
    db = Database.open(settings, writable=False)
    try:
        with db.session() as s, s.begin():
            draft = action(s, args.id, _reviewer(args), *extra)
            detail = draft_detail(s, draft.id)
    except actions.ReviewError as error:
        raise CommandError(str(error)) from error
    finally:
        db.dispose()
    if args.json:
        print(json.dumps(dataclasses.asdict(detail), default=str, indent=2))
    else:
        print(f"draft {detail.draft_id} {verb}: now {detail.status}")
    return 0


def cmd_approve(args: argparse.Namespace, settings: Settings) -> int:
    text = _read_text(args.text_file) if args.text_file else None
    return _act(settings, args, "approved", actions.approve, text)


def cmd_reject(args: argparse.Namespace, settings: Settings) -> int:
    if args.spam:
        return _act(settings, args, "rejected as spam", actions.junk)
    return _act(settings, args, "rejected", actions.reject, args.reason)


def cmd_edit(args: argparse.Namespace, settings: Settings) -> int:
    text = _read_text(args.text_file) if args.text_file else _edit_in_editor(settings, args.id)
    if text is None:
        print(f"draft {args.id}: text unchanged, nothing saved")
        return 0
    return _act(settings, args, "edited", actions.edit, text)


def _edit_in_editor(settings: Settings, draft_id: int) -> str | None:
    """The draft's text after the person edited it in $VISUAL/$EDITOR; None when unchanged."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if not editor:
        raise CommandError("no editor: set $EDITOR, or give the new text with --text-file FILE")
    db = Database.open(settings, writable=False)
    try:
        with db.session() as s:
            current = draft_detail(s, draft_id).text or ""
    except actions.ReviewError as error:
        raise CommandError(str(error)) from error
    finally:
        db.dispose()
    with tempfile.TemporaryDirectory(prefix="mailsense-draft-") as tmp:
        path = Path(tmp) / f"draft-{draft_id}.txt"
        path.write_text(current, encoding="utf-8")
        result = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if result.returncode != 0:
            raise CommandError(f"the editor ({editor}) exited with status {result.returncode}; nothing saved")
        text = path.read_text(encoding="utf-8")
    return None if text == current else text


# -- status ----------------------------------------------------------------------------------------

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
