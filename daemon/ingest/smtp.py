"""SMTP/LMTP ingress: mail delivered to us goes into the same table and pipeline as IMAP mail.

We answer 250 only after the row is committed, so a sender never believes a message was
accepted that a crash could lose; on a database error we answer 451 and the sender retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from daemon.config import SmtpIngressSettings
from daemon.db.session import Database
from daemon.ingest.store import Stored, ensure_account, store_message
from daemon.metrics import MESSAGES_STORED
from daemon.pipeline.stage import FIRST_STAGE

log = logging.getLogger(__name__)


class StoreHandler:
    """aiosmtpd handler: one DATA, one committed row.

    LMTP (RFC 2033) wants one reply per accepted recipient after DATA; a single reply leaves the
    MTA waiting for the others and it defers the delivery. Every recipient gets the same reply:
    the message is stored once, whoever it was for.
    """

    def __init__(self, db: Database, account_name: str, on_stored: Callable[[], None], lmtp: bool = False) -> None:
        self.db = db
        self.account_name = account_name
        self.on_stored = on_stored
        self.lmtp = lmtp

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            result = await asyncio.to_thread(self._store, raw)
        except Exception as exc:
            log.error("smtp ingress: could not store a %d-byte message: %s", len(raw), type(exc).__name__)
            return self._reply("451 4.3.0 Temporary storage failure, try again later", envelope)
        MESSAGES_STORED.labels(self.account_name, "smtp", result.value).inc()
        if result is Stored.inserted:
            self.on_stored()
        return self._reply("250 2.0.0 Message accepted", envelope)

    def _reply(self, status: str, envelope: Envelope) -> str:
        if not self.lmtp:
            return status
        return "\r\n".join([status] * max(1, len(envelope.rcpt_tos)))

    def _store(self, raw: bytes) -> Stored:
        with self.db.session() as session, session.begin():
            account = ensure_account(session, self.account_name)
            result, _ = store_message(
                session, account_id=account.id, raw=raw, source="smtp", first_stage=FIRST_STAGE
            )
            return result


class _SessionLimit:
    """Sessions open right now, shared by the listener's protocol objects (all on one event loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


class _LimitedSMTP(SMTP):
    """SMTP that turns away a connection beyond ``max_sessions`` with 421 before reading a byte.

    Each session may buffer up to ``max_message_bytes`` of DATA; without a limit on sessions,
    memory is bounded by nothing. The sender retries later, as it does on any 4xx.
    """

    sessions: _SessionLimit
    _counted: bool | None = None  # None until connected; False when turned away

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._counted is None:  # not the STARTTLS re-entry of a counted session
            if self.sessions.open >= self.sessions.limit:
                self._counted = False
                log.warning("smtp ingress: %d sessions open, turning a connection away", self.sessions.open)
                cast(asyncio.WriteTransport, transport).write(b"421 4.3.2 Too many connections, try again later\r\n")
                transport.close()
                return
            self._counted = True
            self.sessions.open += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted is False:
            return
        self.sessions.open -= 1
        super().connection_lost(error)


class _LimitedLMTP(_LimitedSMTP, LMTP):
    pass


class _LimitedController(Controller):
    def __init__(self, handler: StoreHandler, lmtp: bool, max_sessions: int, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.protocol = _LimitedLMTP if lmtp else _LimitedSMTP
        self.sessions = _SessionLimit(max_sessions)

    def factory(self) -> SMTP:
        server = self.protocol(self.handler, **self.SMTP_kwargs)
        server.sessions = self.sessions
        return server


def make_controller(settings: SmtpIngressSettings, db: Database, on_stored: Callable[[], None]) -> Controller:
    handler = StoreHandler(db, settings.account, on_stored, lmtp=settings.lmtp)
    return _LimitedController(
        handler,
        lmtp=settings.lmtp,
        max_sessions=settings.max_sessions,
        hostname=settings.host,
        port=settings.port,
        data_size_limit=settings.max_message_bytes,
        decode_data=False,
    )
