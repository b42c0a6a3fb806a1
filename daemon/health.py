"""/healthz and /metrics on a loopback port, plus the systemd notify protocol.

Both are tiny on purpose: a full web framework is not worth it for two GET endpoints.

What /healthz says is read from where the truth is: a folder counts as connected only while the
instance that set ``folders.connected`` still heartbeats (``daemon.db.instances``), and the
backlog is the age of the oldest message that is due and not being worked on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from sqlalchemy import text

from daemon.db import instances
from daemon.db.session import Database
from daemon.metrics import REGISTRY

log = logging.getLogger(__name__)

DUE_MESSAGES = Gauge(
    "mailsense_messages_due", "Messages due at a pipeline stage and not being worked on", registry=REGISTRY,
)
OLDEST_DUE = Gauge(
    "mailsense_oldest_due_message_seconds", "How long the oldest due message has been waiting for a worker",
    registry=REGISTRY,
)

# Served by the partial index ix_messages_claimable: only messages at a pipeline stage are read.
BACKLOG_SQL = text(
    """
    SELECT count(*) FILTER (WHERE lease_until IS NULL OR lease_until < now()) AS due,
           count(*) FILTER (WHERE lease_until >= now()) AS in_progress,
           CAST(EXTRACT(EPOCH FROM now() - min(next_attempt_at)
                FILTER (WHERE lease_until IS NULL OR lease_until < now())) AS float) AS oldest_due_seconds
      FROM messages
     WHERE stage NOT IN ('done', 'quarantined', 'parked') AND next_attempt_at <= now()
    """
)


def folder_states(db: Database, stale_after_seconds: float) -> list[dict[str, object]]:
    """Every folder's sync state (``connected`` derived from the holder's heartbeat), JSON-ready."""
    with db.session() as session:
        rows = instances.folder_states(session, stale_after_seconds)
    keys = ("account", "folder", "connected", "connected_by", "connected_by_host", "last_error")
    return [{
        **{key: r[key] for key in keys},
        "heartbeat_age_seconds": None if r["heartbeat_age_seconds"] is None else round(r["heartbeat_age_seconds"], 1),
        "last_sync_at": r["last_sync_at"].isoformat() if r["last_sync_at"] else None,
        "last_error_at": r["last_error_at"].isoformat() if r["last_error_at"] else None,
    } for r in rows]


def backlog(db: Database) -> dict[str, object]:
    """Due messages, those in progress, and the oldest due one's wait; updates the /metrics gauges."""
    with db.session() as session:
        row = session.execute(BACKLOG_SQL).one()
    oldest = None if row.oldest_due_seconds is None else round(row.oldest_due_seconds, 1)
    DUE_MESSAGES.set(row.due)
    OLDEST_DUE.set(oldest or 0)
    return {"due": row.due, "in_progress": row.in_progress, "oldest_due_seconds": oldest}


def sd_notify(message: str) -> bool:
    """Send a state line to systemd (Type=notify); a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)
        return False


def watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    return int(usec) / 2_000_000 if usec and usec.isdigit() else None


async def serve_health(host: str, port: int, health: Callable[[], dict[str, object]]) -> asyncio.Server:
    # A thread of its own: workers in long batches may hold every thread of the loop's default pool.
    executor = ThreadPoolExecutor(1, thread_name_prefix="healthz")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            path = request.split(b" ")[1].decode() if request.count(b" ") >= 2 else "/"
            if path == "/metrics":
                status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest(REGISTRY)
            elif path == "/healthz":
                state = await asyncio.get_running_loop().run_in_executor(executor, health)
                status = "200 OK" if state.get("ok") else "503 Service Unavailable"
                ctype, body = "application/json", json.dumps(state, default=str).encode()
            else:
                status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)
