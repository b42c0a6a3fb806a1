"""The review page under uvicorn, as a task on an asyncio loop that someone else owns.

``mailsense run`` owns SIGTERM (its workers must drain first), so uvicorn must not install signal
handlers of its own: ``ReviewServer`` leaves them alone and stops when told to. The listening
socket is bound here, before uvicorn starts, so a port in use is a clear error naming the key
instead of uvicorn's ``sys.exit`` from inside a task.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from daemon.config import ConfigError, Settings
from daemon.db.session import Database
from daemon.web.app import build_app

log = logging.getLogger(__name__)


class _QuietSignals(uvicorn.Server):
    """uvicorn without its own signal handlers: the caller decides when to stop."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ReviewServer:
    """Start with ``await start()``, stop with ``await stop()``; requests in flight are finished first."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.app = build_app(settings, db)  # reads the password: a missing secret fails here
        self.sock = listen(settings.web.host, settings.web.port)
        # uvicorn's start and stop lines repeat ours; its warnings and errors still come through.
        quiet = logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.WARNING
        logging.getLogger("uvicorn.error").setLevel(quiet)
        config = uvicorn.Config(self.app, log_config=None, access_log=False, lifespan="off",
                                server_header=False, timeout_graceful_shutdown=5)
        self.server = _QuietSignals(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port}/"

    async def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="review-page")
        while not self.server.started and not self.task.done():
            await asyncio.sleep(0.05)
        if self.task.done():
            self.task.result()  # raises what stopped it
        log.info("review page on %s (log in as %s)", self.url, self.settings.web.reviewer)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            try:
                await self.task
            except Exception as exc:  # a failing page must not keep the daemon from stopping
                log.warning("review page stopped with an error: %s", exc)
        self.sock.close()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a ConfigError naming ``web.host``/``web.port`` and why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"web.host: cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"web.port: cannot listen on {host}:{port}: {exc.strerror} "
                          "(another program uses the port? choose another web.port)") from None
    sock.setblocking(False)
    return sock


async def serve_until_signal(settings: Settings, db: Database) -> int:
    """``mailsense web``: the page alone, until SIGTERM or SIGINT."""
    server = ReviewServer(settings, db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait([stopped, server.task] if server.task else [stopped], return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    log.info("review page stopping")
    await server.stop()
    return 0
