"""Drafts to review, written straight into the embedded Postgres the way the drafting stage does."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from daemon.db.session import Database
from daemon.ingest.store import ensure_account, store_message
from tests.helpers import make_message

GENERATED = "Hello Maria,\n\nUnplug the router, wait thirty seconds and plug it in again.\n\nBest regards"


def add_draft(db: Database, status: str = "pending", draft_text: str | None = GENERATED,
              subject: str = "Wi-Fi drops", body: str = "My Wi-Fi keeps disconnecting. How do I fix it?\n") -> int:
    """A message and its draft, inserted as the drafting stage inserts them (writer = stage)."""
    with db.session() as s, s.begin():
        account = ensure_account(s, "import")
        _, message_id = store_message(s, account_id=account.id, raw=make_message(subject, body, "maria@example.org"),
                                      source="import", first_stage="done")
        s.execute(text("UPDATE messages SET subject = :subject, body_text = :body, from_addr = 'maria@example.org', "
                       "from_name = 'Maria Lopez', spam_verdict = 'ham', spam_score = 0.02 WHERE id = :id"),
                  {"subject": subject, "body": body, "id": message_id})
        s.execute(text("SELECT set_config('mailsense.writer', 'stage', true)"))
        citations = [{"n": 1, "chunk_id": None, "document_id": 1, "title": "Wi-Fi", "heading_path": "Wi-Fi",
                      "audience": "public", "score": 0.9, "similarity": 0.8, "quoted": True,
                      "text": "Unplug the router, wait thirty seconds."}]
        return int(s.execute(
            text("INSERT INTO drafts (message_id, status, text, citations, confidence, reason, backend) "
                 "VALUES (:m, :status, :text, CAST(:citations AS jsonb), 0.8, :reason, 'extractive') RETURNING id"),
            {"m": message_id, "status": status, "text": draft_text, "citations": json.dumps(citations),
             "reason": "no confident answer" if status == "needs_human" else None},
        ).scalar_one())


def draft_row(db: Database, draft_id: int) -> dict[str, object]:
    with db.session() as s:
        return dict(s.execute(text("SELECT * FROM drafts WHERE id = :id"), {"id": draft_id}).mappings().one())


@pytest.fixture
def draft_id(db: Database) -> int:
    return add_draft(db)
