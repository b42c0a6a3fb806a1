"""Fixtures for the review page: parsed messages with drafts in the embedded Postgres, the page's settings."""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.drafts.tables import Draft
from daemon.ingest.store import ensure_account, store_message
from daemon.parse.stage import ParseStage
from daemon.pipeline.router import Pipeline
from daemon.pipeline.worker import Worker

PASSWORD = "correct horse battery staple"
PASSWORD_ENV = "MAILSENSE_TEST_WEB_PASSWORD"

WIFI_QUESTION = (
    "Hi there,\n\nmy Wi-Fi keeps disconnecting every few minutes since yesterday. How do I fix this?\n\n"
    "Thanks,\nMaria\n\nOn Mon, 23 Nov 2026 at 09:12, Support <support@example.com> wrote:\n"
    "> Refunds are paid within 14 days.\n> Kind regards, Support\n"
)
WIFI_DRAFT = (
    "Hello Maria,\n\nIf the Wi-Fi connection drops every few minutes, the router usually needs a restart:\n\n"
    "1. Unplug the router, wait thirty seconds and plug it in again.\n"
    "2. On your device open Settings > Network and tap Forget this network.\n"
    "3. Connect to the network again and enter the Wi-Fi password. [1]\n\nBest regards,\nSupport team"
)
WIFI_CITATIONS = [
    {"n": 1, "chunk_id": 11, "document_id": 3, "title": "Wi-Fi keeps disconnecting",
     "heading_path": "Wi-Fi keeps disconnecting", "audience": "public", "score": 0.031, "similarity": 0.71,
     "quoted": True,
     "text": "If the Wi-Fi connection drops every few minutes, the router usually needs a restart.\n\n"
             "1. Unplug the router, wait thirty seconds and plug it in again.\n"
             "2. On your device open Settings > Network and tap Forget this network.\n"
             "3. Connect to the network again and enter the Wi-Fi password."},
]
REFUND_QUESTION = "Hello,\n\ncan I get my money back for order 5521? The parcel never arrived.\n\nJohn\n"
REFUND_CITATIONS = [
    {"n": 1, "chunk_id": 12, "document_id": 4, "title": "Refunds", "heading_path": "Refunds", "audience": "public",
     "score": 0.018, "similarity": 0.38, "quoted": False,
     "text": "Refunds are paid within 14 days to the original payment method. To ask for a refund, reply to "
             "your order confirmation with the order number."},
]


@dataclass
class Drafts:
    """Ids of the drafts the fixture made: one ready to send, one that needs a person."""

    wifi: int
    refund: int


def _email(subject: str, body: str, sender: str, date: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg.set_content(body)
    return msg.as_bytes()


def _store_parsed(db: Database, raw: bytes, spam_score: float) -> int:
    with db.session() as s, s.begin():
        account = ensure_account(s, "support")
        _, message_id = store_message(s, account_id=account.id, raw=raw, source="import", first_stage="parse")
    worker = Worker("test", db, Pipeline([ParseStage()]), Settings().pipeline)
    while worker.run_once():
        pass
    with db.session() as s, s.begin():
        s.execute(text("UPDATE messages SET spam_score = :score, spam_verdict = 'ham' WHERE id = :id"),
                  {"score": spam_score, "id": message_id})
    return message_id


def add_draft(db: Database, message_id: int, *, status: str, text_: str | None, confidence: float,
              citations: list[dict[str, object]], reason: str | None = None) -> int:
    with db.session() as s, s.begin():
        draft = Draft(message_id=message_id, status=status, text=text_, citations=citations, confidence=confidence,
                      reason=reason, backend="extractive", model=None)
        s.add(draft)
        s.flush()
        return draft.id


@pytest.fixture
def drafts(db: Database) -> Drafts:
    wifi_message = _store_parsed(db, _email("Wifi keeps dropping", WIFI_QUESTION, "Maria Lopez <maria@example.org>",
                                             "Wed, 25 Nov 2026 10:00:00 +0000"), spam_score=0.02)
    refund_message = _store_parsed(db, _email("Refund for order 5521", REFUND_QUESTION, "John Roe <john@example.net>",
                                              "Wed, 25 Nov 2026 11:30:00 +0000"), spam_score=0.11)
    return Drafts(
        wifi=add_draft(db, wifi_message, status="pending", text_=WIFI_DRAFT, confidence=0.74, citations=WIFI_CITATIONS),
        refund=add_draft(db, refund_message, status="needs_human", text_=None, confidence=0.21,
                         citations=REFUND_CITATIONS, reason="low confidence (0.21 < 0.40): no source answers it well"),
    )


@pytest.fixture
def web_settings(db_url: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return Settings.model_validate({
        "daemon": {"state_dir": str(state_dir)},
        "database": {"url": db_url},
        "web": {"enabled": True, "password_env": PASSWORD_ENV, "username": "ann"},
    })
