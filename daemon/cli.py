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
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from daemon.config import ConfigError, Settings, load_settings
from daemon.db.session import Database
from daemon.errors import CommandError
from daemon.logs import setup_logging

log = logging.getLogger("mailsense")

Handler = Callable[[argparse.Namespace, Settings], int]
FEATURE_CLIS = ("daemon.training.cli", "daemon.kb.cli", "daemon.drafts.cli", "daemon.learning.models_cli")


def check_vectors(db: Database) -> None:
    """Fail with one line (exit 69) instead of crash-looping on a pgvector this CPU cannot run."""
    from daemon.db.vector_check import check_vector_operations

    try:
        check_vector_operations(db.url, embedded=db.embedded)
    except CommandError:
        db.dispose()
        raise


def _stop_while_starting(signum: int, frame: object) -> None:
    """SIGTERM before the service loop owns the signals: stop cleanly, not by the default kill.

    systemd and container runtimes send SIGTERM whenever they like, also while torch is still
    importing; a clean exit (0) there keeps "stopped" and "crashed" apart in their records.
    """
    log.info("stop requested (%s) while starting; exiting", signal.Signals(signum).name)
    raise SystemExit(0)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    signal.signal(signal.SIGTERM, _stop_while_starting)
    from daemon.service import Service

    db = Database.open(settings, writable=not args.no_migrate)  # a writable open checks vectors itself
    if args.no_migrate:
        check_vectors(db)
    if args.demo and not settings.accounts and not settings.smtp_ingress.enabled:
        from daemon.ingest.importer import demo_mbox, import_paths

        counts = import_paths(db, "demo", [demo_mbox()])
        log.info("no account configured: imported the bundled demo messages (%s); see `mailsense status`",
                 ", ".join(f"{k} {v}" for k, v in counts.items()))
    try:
        return asyncio.run(Service(settings, db).run())
    finally:
        db.dispose()


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.db import migrate as migrations

    db = Database.open(settings, writable=True)
    print(f"database at revision {migrations.current_revision(db.engine)}")
    db.dispose()
    return 0


def cmd_db_build_pgvector(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.db import portable_pgvector

    install = portable_pgvector.PgInstall.embedded()
    if not args.force and portable_pgvector.is_installed(install):
        print(f"pgvector {portable_pgvector.PGVECTOR_VERSION} built for any x86-64 CPU is already installed")
        return 0
    try:
        library = portable_pgvector.build_and_install(install)
    except portable_pgvector.PortableBuildError as exc:
        raise CommandError(str(exc)) from None
    print(f"installed {library} (pgvector {portable_pgvector.PGVECTOR_VERSION}, any x86-64 CPU); "
          "restart a running embedded database to load it")
    return 0


def cmd_db_check(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.open(settings, writable=False)
    check_vectors(db)
    db.dispose()
    print("database reachable, schema current, vector operations work")
    return 0


def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    """Everything a first start needs, done once: schema, then each feature's set-up (starter model...)."""
    db = Database.open(settings, writable=True)  # checks vector operations first
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

    db = Database.open(settings, writable=False)
    with db.session() as session:
        data = status.collect(session, stale_after_seconds=3 * settings.pipeline.heartbeat_seconds)
    extra: list[str] = []
    for hook in _status_hooks():
        extra.extend(hook(settings, db))
    db.dispose()
    data["database"] = [database_description(settings)]
    if args.json:
        print(json.dumps(data, default=str, indent=2))
    else:
        print(status.render(data, extra))
    return 0


def database_description(settings: Settings) -> dict[str, object]:
    """Which database a command uses and why: the first thing to check when a listing looks empty."""
    from sqlalchemy.engine import make_url

    from daemon.db.embedded import data_dir_of, to_sqlalchemy_url

    url = settings.database_url()
    if url:
        return {"kind": "external", "url": make_url(to_sqlalchemy_url(url)).render_as_string(hide_password=True)}
    return {"kind": "embedded", "data_dir": str(data_dir_of(settings.daemon.state_dir)),
            "state_dir_from": settings.state_dir_source}


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.ingest.importer import demo_mbox, import_paths

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
    db = Database.open(settings, writable=True)
    counts = import_paths(db, args.account, paths)
    db.dispose()
    print(f"imported into account {args.account!r}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def cmd_requeue(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.db import queue

    db = Database.open(settings, writable=True)
    with db.session() as session:
        n = queue.requeue(session, args.ids or None)
    db.dispose()
    print(f"{n} message(s) sent back to the stage they stopped at")
    return 0


def cmd_check_config(args: argparse.Namespace, settings: Settings) -> int:
    secrets = settings.check_secrets()  # raises ConfigError naming the key
    print(f"configuration OK: {len(settings.accounts)} account(s), {secrets} secret(s) readable, "
          f"state in {settings.daemon.state_dir} ({settings.state_dir_source})")
    return 0


def _status_hooks() -> list[Callable[..., list[str]]]:
    hooks = []
    for name in FEATURE_CLIS:
        module = _optional_module(name)
        if module is not None and hasattr(module, "status_lines"):
            hooks.append(module.status_lines)
    return hooks


def _optional_module(name: str) -> ModuleType | None:
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
    build = db.add_parser("build-pgvector", help="build the embedded database's pgvector for any x86-64 CPU "
                          "(needs gcc and make; scripts/setup-env runs it)")
    build.add_argument("--force", action="store_true", help="rebuild even if already installed")
    build.set_defaults(handler=cmd_db_build_pgvector)
    db.add_parser("check", help="is the database reachable, its schema current, do vector operations work?"
                  ).set_defaults(handler=cmd_db_check)

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
    # The embedded server's lock-file location falls back to /tmp without XDG_RUNTIME_DIR; that is fine.
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
    except CommandError as exc:
        print(f"mailsense: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
