"""SMTP/LMTP ingress replies: LMTP answers once per recipient (RFC 2033), after the row is committed."""

from __future__ import annotations

import socket

from sqlalchemy import text

from daemon.config import SmtpIngressSettings
from daemon.db.session import Database
from daemon.ingest.smtp import make_controller
from tests.helpers import make_message, wait_for


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _lmtp_transaction(port: int, recipients: list[str], message: bytes) -> list[bytes]:
    """Speak LMTP by hand (smtplib reads one reply after DATA) and return every reply line after DATA."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        reader = conn.makefile("rb")

        def reply() -> bytes:
            lines = [reader.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(reader.readline())
            return lines[-1]

        assert reply().startswith(b"220")
        for command in [b"LHLO test.example", b"MAIL FROM:<alice@example.org>",
                        *(b"RCPT TO:<%s>" % r.encode() for r in recipients)]:
            conn.sendall(command + b"\r\n")
            assert reply()[:1] == b"2", command
        conn.sendall(b"DATA\r\n")
        assert reply().startswith(b"354")
        conn.sendall(message.replace(b"\n", b"\r\n") + b"\r\n.\r\n")
        replies = [reader.readline() for _ in recipients]
        conn.sendall(b"QUIT\r\n")
        return replies


def test_lmtp_answers_every_recipient_and_stores_the_message_once(db: Database) -> None:
    port = _free_port()
    settings = SmtpIngressSettings(enabled=True, host="127.0.0.1", port=port, lmtp=True, account="lmtp")
    controller = make_controller(settings, db, on_stored=lambda: None)
    controller.start()
    try:
        recipients = ["support@example.com", "sales@example.com", "help@example.com"]
        replies = _lmtp_transaction(port, recipients, make_message("three recipients"))
    finally:
        controller.stop()
    assert [line[:3] for line in replies] == [b"250"] * 3, replies
    with db.session() as session:
        stored = session.execute(text("SELECT count(*) FROM messages WHERE source = 'smtp'")).scalar_one()
    assert stored == 1


def test_sessions_beyond_the_limit_are_turned_away_with_421(db: Database) -> None:
    port = _free_port()
    settings = SmtpIngressSettings(enabled=True, host="127.0.0.1", port=port, max_sessions=2)
    controller = make_controller(settings, db, on_stored=lambda: None)
    controller.start()
    try:
        first = socket.create_connection(("127.0.0.1", port), timeout=10)
        second = socket.create_connection(("127.0.0.1", port), timeout=10)
        assert first.makefile("rb").readline().startswith(b"220")
        assert second.makefile("rb").readline().startswith(b"220")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as third:
            assert third.makefile("rb").readline().startswith(b"421")
        first.close()
        wait_for(lambda: _banner(port).startswith(b"220"), 10, "a free session after one closed")
        second.close()
    finally:
        controller.stop()


def _banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        return conn.makefile("rb").readline()
