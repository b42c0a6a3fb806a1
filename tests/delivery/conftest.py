"""Delivery test helpers: draft rows written as the drafting stage writes them, an SMTP sink, mailbox reads."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from tests.helpers import free_port

DRAFT_TEXT = "Hello Alice,\n\nrestart the router and connect again.\n\nSupport team"


def question(n: int, subject: str = "Wi-Fi keeps dropping") -> bytes:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.org>"
    msg["To"] = "support@example.com"
    msg["Subject"] = f"{subject} #{n}"
    msg["Message-ID"] = f"<q{n}.{threading.get_ident()}@example.org>"
    msg["References"] = "<earlier@example.org>"
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0000"
    msg.set_content(f"My Wi-Fi drops every few minutes (case {n}). What can I do?\n")
    return msg.as_bytes()


def add_draft(db: Database, n: int, *, status: str = "pending", confidence: float = 0.95,
              draft_text: str = DRAFT_TEXT, account: str = "test") -> tuple[int, str]:
    """A received message and its draft; returns (draft id, the message's Message-ID)."""
    raw = question(n)
    message_id = message_from_bytes(raw, policy=policy.default)["Message-ID"]
    with db.session() as session:
        session.execute(text("INSERT INTO accounts (name) VALUES (:a) ON CONFLICT (name) DO NOTHING"), {"a": account})
        message = session.execute(text(
            "INSERT INTO messages (account_id, source, message_id, content_sha256, raw, size, stage, subject,"
            " from_addr) SELECT id, 'import', :mid, :sha, :raw, :size, 'done', :subject, 'alice@example.org'"
            " FROM accounts WHERE name = :a RETURNING id"),
            {"a": account, "mid": message_id, "sha": hashlib.sha256(raw).hexdigest(), "raw": raw, "size": len(raw),
             "subject": f"case {n}"}).scalar_one()
        draft = session.execute(text(
            "INSERT INTO drafts (message_id, status, text, citations, confidence, backend)"
            " VALUES (:m, :status, :text, '[]', :c, 'extractive') RETURNING id"),
            {"m": message, "status": status, "text": draft_text, "c": confidence}).scalar_one()
        session.commit()
    return draft, message_id


def approve(db: Database, draft_id: int) -> None:
    """What a reviewer types: plain SQL."""
    with db.session() as session:
        session.execute(text("UPDATE drafts SET status = 'approved' WHERE id = :id"), {"id": draft_id})
        session.commit()


def draft_row(db: Database, draft_id: int) -> dict[str, Any]:
    with db.session() as session:
        return dict(session.execute(text("SELECT * FROM drafts WHERE id = :id"), {"id": draft_id}).one()._mapping)


def folder_messages(dovecot: Any, user: str, folder: str) -> list[EmailMessage]:
    if folder not in dovecot.list_folders(user):
        return []
    out = []
    for uid in dovecot.uids(user, folder):
        msg = message_from_bytes(dovecot.fetch_raw(user, folder, uid), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def settings_for(dovecot: Any, user: str, **delivery: Any) -> Settings:
    return Settings.model_validate({
        "accounts": [{
            "name": "test", "host": "127.0.0.1", "port": dovecot.tls_port, "tls": "implicit",
            "ca_file": str(dovecot.cert_path), "user": user, "password_env": "MAILSENSE_TEST_PASSWORD",
            "timeout_seconds": 10,
            "delivery": {"from_address": "support@example.com", "from_name": "Example Support", **delivery},
        }],
    })


class Sink:
    """aiosmtpd handler that keeps every accepted message."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append((envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture
def imap_password(dovecot: Any, mailbox_user: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[mailbox_user])
    return mailbox_user
