"""The ``mailsense`` command. Thin: it parses arguments and calls into the packages.

Feature packages add their own sub-commands through a ``register(subparsers)`` function in
their ``cli`` module; each handler takes ``(args, settings)`` and returns an exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from daemon.config import ConfigError, Settings, load_settings
from daemon.logs import setup_logging

log = logging.getLogger("mailsense")

Handler = Callable[[argparse.Namespace, Settings], int]
FEATURE_CLIS = ("daemon.spam.cli", "daemon.kb.cli", "daemon.drafts.cli")


def open_database(settings: Settings, migrate: bool = True):  # type: ignore[no-untyped-def]
    """Connect (starting the embedded server if no URL is set) and bring the schema up to date."""
    from daemon.db import migrate as migrations
    from daemon.db.embedded import embedded_url
    from daemon.db.session import Database

    url = settings.database_url() or embedded_url(settings.daemon.state_dir)
    if migrate:
        migrations.upgrade(url)
    return Database.from_url(url, pool_size=settings.database.pool_size)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.service import Service

    db = open_database(settings, migrate=not args.no_migrate)
    if args.demo and not settings.accounts and not settings.smtp_ingress.enabled:
        from daemon.importer import demo_mbox, import_paths

        counts = import_paths(db, "demo", [demo_mbox()])
        log.info("no account configured: imported the bundled demo messages (%s); see `mailsense status`",
                 ", ".join(f"{k} {v}" for k, v in counts.items()))
    try:
        return asyncio.run(Service(settings, db).run())
    finally:
        db.dispose()


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.db import migrate as migrations

    db = open_database(settings)
    print(f"database at revision {migrations.current_revision(db.engine)}")
    db.dispose()
    return 0


def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    """Everything a first start needs, done once: schema, then each feature's set-up (starter model...)."""
    db = open_database(settings)
    try:
        for name in FEATURE_CLIS:
            module = _optional_module(name)
            if module is not None and hasattr(module, "setup"):
                module.setup(settings, db)
    finally:
        db.dispose()
    print("set-up complete")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from daemon import status

    db = open_database(settings)
    with db.session() as session:
        data = status.collect(session)
    extra: list[str] = []
    for hook in _status_hooks():
        extra.extend(hook(settings, db))
    db.dispose()
    if args.json:
        print(json.dumps(data, default=str, indent=2))
    else:
        print(status.render(data, extra))
    return 0


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.importer import demo_mbox, import_paths

    paths = [Path(p) for p in args.paths]
    if args.demo:
        paths.append(demo_mbox())
    if not paths:
        print("nothing to import: give paths or --demo", file=sys.stderr)
        return 2
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    db = open_database(settings)
    counts = import_paths(db, args.account, paths)
    db.dispose()
    print(f"imported into account {args.account!r}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_requeue(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.db import queue

    db = open_database(settings)
    with db.session() as session:
        n = queue.requeue(session, args.ids or None)
    db.dispose()
    print(f"{n} message(s) sent back to the stage they stopped at")
    return 0


def cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    print(f"configuration OK: {len(settings.accounts)} account(s), state in {settings.daemon.state_dir}")
    return 0


def _status_hooks() -> list[Callable[..., list[str]]]:
    hooks = []
    for name in FEATURE_CLIS:
        module = _optional_module(name)
        if module is not None and hasattr(module, "status_lines"):
            hooks.append(module.status_lines)
    return hooks


def _optional_module(name: str):  # type: ignore[no-untyped-def]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailsense", description="Mailsense: IMAP ingestion, spam filing and grounded support drafts."
    )
    parser.add_argument("-c", "--config", help="TOML configuration (default: $MAILSENSE_CONFIG, "
                        "/etc/mailsense/mailsense.toml, else built-in defaults)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the daemon until SIGTERM")
    run.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")
    run.add_argument("--demo", action="store_true",
                     help="with no account configured, import the bundled sample messages first")
    run.set_defaults(handler=cmd_run)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply migrations (creates the embedded server if needed)").set_defaults(
        handler=cmd_db_upgrade
    )

    sub.add_parser("setup", help="first-run set-up: schema, starter spam model (done once, cached)").set_defaults(
        handler=cmd_setup
    )

    status = sub.add_parser("status", help="per account/folder: connection, checkpoint, messages by state")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    imp = sub.add_parser("import", help="import mbox/Maildir/.eml into the pipeline")
    imp.add_argument("paths", nargs="*")
    imp.add_argument("--account", default="import", help="account name to file the messages under")
    imp.add_argument("--demo", action="store_true", help="import the bundled sample of public messages")
    imp.set_defaults(handler=cmd_import)

    requeue = sub.add_parser("requeue", help="retry parked or quarantined messages")
    requeue.add_argument("ids", nargs="*", type=int)
    requeue.set_defaults(handler=cmd_requeue)

    sub.add_parser("check-config", help="validate the configuration and exit").set_defaults(
        handler=cmd_check_config
    )

    for name in FEATURE_CLIS:
        module = _optional_module(name)
        if module is not None:
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local paths only
    # pgserver's lock-file location falls back to /tmp without XDG_RUNTIME_DIR; that is fine for us.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"mailsense: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG: systemd's RestartPreventExitStatus keeps a broken config from looping
    setup_logging("DEBUG" if args.verbose else settings.daemon.log_level, settings.daemon.log_format)
    try:
        return int(args.handler(args, settings))
    except ConfigError as exc:
        print(f"mailsense: {exc}", file=sys.stderr)
        return 78
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
