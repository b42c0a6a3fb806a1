"""``mailsense learn``: tell the spam filter what a message is, the ``sa-learn`` / ``bogofilter -s/-n`` way.

    mailsense learn spam FILE...            RFC 822 files, mbox files or Maildirs
    mailsense learn ham --message ID...     messages already stored (ids as in `mailsense status`)
    mailsense learn --from-folder Junk=spam INBOX=ham [--account NAME] [--limit N]

Each message gets a label (source ``cli``; the newest label of a message counts, so learning a
message again as the other class corrects it). Files are stored as messages at stage ``done``:
they are learned from, never classified, filed or drafted for. Afterwards the token statistics are
refreshed at once (``daemon.learning.refresh``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from daemon.config import AccountSettings, Settings
from daemon.db.session import Database
from daemon.errors import CommandError
from daemon.ingest.store import Stored, ensure_account, store_message
from daemon.learning.labels import LABELS, LabelError, record_label
from daemon.mail.files import iter_mail_files

SOURCE = "cli"


def _account_name(args: argparse.Namespace, settings: Settings) -> str:
    if args.account:
        return str(args.account)
    if len(settings.accounts) == 1:
        return settings.accounts[0].name
    return "import"


def _configured_account(settings: Settings, name: str) -> AccountSettings:
    try:
        return settings.account(name)
    except KeyError:
        known = ", ".join(a.name for a in settings.accounts) or "none configured"
        raise CommandError(f"--account {name}: no such account in the configuration ({known})") from None


def _parse_specs(values: list[str]) -> list[tuple[str, str]]:
    specs = []
    for value in values:
        folder, _, label = value.rpartition("=")
        if not folder or label not in LABELS:
            raise CommandError(f"--from-folder {value!r}: expected FOLDER=spam or FOLDER=ham, e.g. Junk=spam")
        specs.append((folder, label))
    return specs


def cmd_learn(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.learning.refresh import labels_changed

    modes = sum(bool(x) for x in (args.files, args.message, args.from_folder))
    if modes != 1 or (args.from_folder and args.label) or (not args.from_folder and not args.label):
        print("mailsense learn: give spam|ham with FILE... or --message ID..., or --from-folder FOLDER=spam|ham...",
              file=sys.stderr)
        return 2
    db = Database.open(settings, writable=True)
    try:
        if args.from_folder:
            labelled = _learn_folders(args, settings, db)
        elif args.message:
            labelled = _learn_messages(args, db)
        else:
            labelled = _learn_files(args, settings, db)
        if labelled:
            print(labels_changed(settings, db, "mailsense learn"))
    finally:
        db.dispose()
    return 0


def _learn_messages(args: argparse.Namespace, db: Database) -> int:
    with db.session() as session, session.begin():
        try:
            for message_id in args.message:
                record_label(session, message_id, args.label, SOURCE, "mailsense learn --message")
        except LabelError as exc:
            raise CommandError(f"--message: {exc}; nothing was learned") from None
    print(f"learned {len(args.message)} message(s) as {args.label}")
    return len(args.message)


def _learn_files(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    missing = [p for p in args.files if not Path(p).exists()]
    if missing:
        raise CommandError(f"not found: {', '.join(missing)}")
    account = _account_name(args, settings)
    counts = {"new": 0, "known": 0}
    for path in args.files:
        for _name, raw in iter_mail_files(Path(path)):
            with db.session() as session, session.begin():
                account_id = ensure_account(session, account).id
                result, message_id = store_message(session, account_id=account_id, raw=raw, source="learn",
                                                   first_stage="done")
                record_label(session, message_id, args.label, SOURCE, f"mailsense learn {Path(path).name}"[:200])
            counts["new" if result is Stored.inserted else "known"] += 1
            total = counts["new"] + counts["known"]
            if total % 100 == 0:
                print(f"{total} message(s) learned as {args.label}...", flush=True)
    total = counts["new"] + counts["known"]
    print(f"learned {total} message(s) as {args.label} in account {account!r} "
          f"({counts['new']} new, {counts['known']} already stored)")
    return total


def _learn_folders(args: argparse.Namespace, settings: Settings, db: Database) -> int:
    from daemon.imap import connection
    from daemon.learning.bootstrap import FolderSpec, learn_from_folders

    account = _configured_account(settings, _account_name(args, settings))
    specs = [FolderSpec(folder, label) for folder, label in _parse_specs(args.from_folder)]
    limit = args.limit or account.learning.bootstrap_per_class
    try:
        mailbox = connection.connect(account)
    except connection.AuthenticationFailed as exc:
        raise CommandError(str(exc)) from None
    except connection.CONNECTION_ERRORS as exc:
        raise CommandError(f"IMAP server {account.host}:{account.effective_port} unreachable: "
                           f"{type(exc).__name__}") from None
    try:
        progress = learn_from_folders(db, mailbox, account, specs, limit, SOURCE,
                                      lambda line: print(line, flush=True), start_point_wait=0.0)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    finally:
        connection.close(mailbox)
    print(f"account {account.name}: {progress.summary()}")
    return progress.labelled["spam"] + progress.labelled["ham"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    learn = subparsers.add_parser(
        "learn", help="teach the spam filter: learn spam|ham FILE... | --message ID... | --from-folder Junk=spam ...",
        description="Label messages as spam or ham (the newest label of a message counts).")
    learn.add_argument("label", nargs="?", choices=LABELS, help="what the messages are")
    learn.add_argument("files", nargs="*", metavar="FILE", help="RFC 822 files, mbox files or Maildirs")
    learn.add_argument("--message", nargs="+", type=int, metavar="ID", help="ids of stored messages")
    learn.add_argument("--from-folder", nargs="+", metavar="FOLDER=LABEL",
                       help="learn the newest messages of mailbox folders, e.g. Junk=spam INBOX=ham")
    learn.add_argument("--account", help="account (default: the only configured one; files: else 'import')")
    learn.add_argument("--limit", type=int, help="--from-folder: newest messages per class "
                       "(default [accounts.learning] bootstrap_per_class)")
    learn.set_defaults(handler=cmd_learn)
