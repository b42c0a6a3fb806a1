"""``mailsense web``: the review page alone, without the rest of the daemon.

Useful on a machine that only reviews (the daemon runs elsewhere against the same database), or to
try the page before switching on ``[web] enabled`` for ``mailsense run``.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from daemon.db.session import Database

if TYPE_CHECKING:
    from daemon.config import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    web = subparsers.add_parser(
        "web", help="serve the review page alone (queue, approve, edit, reject) until SIGTERM; see [web]"
    )
    web.add_argument("--host", help="address to listen on (default: web.host, 127.0.0.1)")
    web.add_argument("--port", type=int, help="port to listen on (default: web.port, 8080)")
    web.set_defaults(handler=cmd_web)


def cmd_web(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from daemon.config import ConfigError
    from daemon.web.server import serve_until_signal

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if overrides:
        try:
            web = settings.web.model_validate({**settings.web.model_dump(), **overrides})
        except ValidationError as exc:
            problem = exc.errors()[0]
            raise ConfigError(f"--{problem['loc'][0]}: {problem['msg']}") from None
        settings = settings.model_copy(update={"web": web})
    settings.web.password()  # no password source: stop here with the key named, before touching the database
    db = Database.open(settings, writable=False)  # the page never migrates; the daemon does
    try:
        return asyncio.run(serve_until_signal(settings, db))
    finally:
        db.dispose()
