"""The drafting stage's part in review: passage snapshots, superseding in a thread, unsure mail per account."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.drafts.stage import DraftStage
from daemon.drafts.threads import thread_of
from daemon.kb.embeddings import Embedder
from daemon.kb.store import KnowledgeBase
from daemon.review.queue import draft_detail, list_queue
from tests.drafts.conftest import write_kb
from tests.drafts.test_stage import QUESTION, email, run, store

FOLLOW_UP = "Hello again,\n\nmy Wi-Fi still keeps disconnecting after the restart. What else can I try?\n"


@pytest.fixture
def settings() -> Settings:
    return Settings.model_validate({"drafts": {"enabled": True, "own_addresses": ["support@example.com"]}})


@pytest.fixture
def kb_db(db: Database, embedder: Embedder, tmp_path: Path) -> Database:
    KnowledgeBase(db, embedder).add([write_kb(tmp_path / "kb")])
    return db


def mail(subject: str, body: str, message_id: str, **headers: str) -> bytes:
    """``email(...)`` with a known Message-ID, for threading."""
    msg = message_from_bytes(email(subject, body, **headers), policy=policy.default)
    msg.replace_header("Message-ID", message_id)
    return msg.as_bytes()


def rows(db: Database) -> list[dict[str, object]]:
    with db.session() as s:
        return [dict(r) for r in s.execute(text(
            "SELECT d.id, d.status, d.superseded_by, d.thread_key, m.subject FROM drafts d "
            "JOIN messages m ON m.id = d.message_id ORDER BY d.id")).mappings()]


def test_thread_of_reads_references_then_in_reply_to():
    thread = thread_of("<c@x>", {"references": ["<a@x>\r\n <b@x>"], "in-reply-to": ["<b@x>"]})
    assert thread.key == "<a@x>" and thread.references == ("<a@x>", "<b@x>")
    assert thread_of("<c@x>", {"in-reply-to": ["Maria's mail <b@x>"]}).key == "<b@x>"
    assert thread_of("<c@x>", {}).key == "<c@x>" and thread_of(None, None).key is None


def test_a_follow_up_in_the_thread_supersedes_the_older_pending_draft(kb_db, embedder, settings):
    stage = DraftStage(settings, kb_db, embedder=embedder)
    store(kb_db, mail("Wifi problem", QUESTION, "<q1@example.org>"))
    store(kb_db, mail("Refund", "How do I get a refund for my order?\n", "<other@example.org>"))
    run(kb_db, stage, settings)
    store(kb_db, mail("Re: Wifi problem", FOLLOW_UP, "<q2@example.org>",
                      In_Reply_To="<reply@example.com>", References="<q1@example.org> <reply@example.com>"))
    run(kb_db, stage, settings)

    one, refund, two = rows(kb_db)
    assert one["status"] == "superseded" and one["superseded_by"] == two["id"]
    assert two["status"] in ("pending", "needs_human") and two["thread_key"] == one["thread_key"] == "<q1@example.org>"
    assert refund["status"] in ("pending", "needs_human") and refund["superseded_by"] is None
    with kb_db.session() as s:
        assert [q.draft_id for q in list_queue(s)] == [refund["id"], two["id"]]

    # Reprocessing the first message does not bring its draft back, nor touch the newer one.
    with kb_db.session() as s, s.begin():
        s.execute(text("UPDATE messages SET stage = 'draft' WHERE message_id = '<q1@example.org>'"))
    run(kb_db, stage, settings)
    assert [r["status"] for r in rows(kb_db)] == ["superseded", refund["status"], two["status"]]


def test_cited_passages_survive_a_kb_rebuild(kb_db, embedder, settings):
    store(kb_db, email("Wifi problem", QUESTION))
    run(kb_db, DraftStage(settings, kb_db, embedder=embedder), settings)
    with kb_db.session() as s, s.begin():
        s.execute(text("DELETE FROM kb_chunks"))  # what kb sync does before inserting new chunks
    with kb_db.session() as s:
        detail = draft_detail(s, 1)
    quoted = [src for src in detail.sources if src.quoted]
    assert quoted and quoted[0].title == "Wi-Fi keeps disconnecting"
    assert quoted[0].text is not None and "Unplug the router" in quoted[0].text


def account_settings(unsure: str | None) -> Settings:
    drafts = {"unsure": unsure} if unsure else {}
    return Settings.model_validate({
        "drafts": {"enabled": True, "own_addresses": ["support@example.com"]},
        "accounts": [{"name": "import", "host": "imap.example.com", "user": "support@example.com",
                      "password_env": "UNUSED", "drafts": drafts}],
    })


@pytest.mark.parametrize(("unsure", "drafted"), [(None, True), ("draft", True), ("skip", False)])
def test_unsure_mail_is_drafted_unless_the_account_says_skip(kb_db, embedder, unsure, drafted):
    settings = account_settings(unsure)
    store(kb_db, email("Wifi problem", QUESTION))
    with kb_db.session() as s, s.begin():
        s.execute(text("UPDATE messages SET spam_verdict = 'unsure', spam_score = 0.55"))
    run(kb_db, DraftStage(settings, kb_db, embedder=embedder), settings)
    with kb_db.session() as s:
        skip = s.execute(text("SELECT rule, reason FROM draft_skips")).one_or_none()
        queue = list_queue(s)
    if drafted:
        assert skip is None and len(queue) == 1
        assert queue[0].spam_verdict == "unsure" and queue[0].spam_score == 0.55
    else:
        assert queue == [] and skip is not None
        assert tuple(skip) == ("spam", 'spam verdict unsure ([accounts.drafts] unsure = "skip")')
