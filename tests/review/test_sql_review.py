"""Reviewing with plain SQL: the triggers check transitions, stamp who/when, mark edits, notify."""

from __future__ import annotations

import json

import psycopg
import pytest
from sqlalchemy import exc, text

from daemon.db.session import Database
from tests.review.conftest import GENERATED, add_draft, draft_row


def sql(db: Database, statement: str, **params: object) -> None:
    with db.session() as s, s.begin():
        s.execute(text(statement), params)


def test_a_new_draft_keeps_the_generated_text(db, draft_id):
    row = draft_row(db, draft_id)
    assert row["generated_text"] == GENERATED and row["edited_by_human"] is False
    assert row["reviewed_at"] is None and row["edit_similarity"] is None


def test_sql_approve_stamps_the_database_user_or_the_reviewer_setting(db, draft_id):
    other = add_draft(db, subject="Second")
    sql(db, "UPDATE drafts SET status = 'approved' WHERE id = :id", id=draft_id)
    row = draft_row(db, draft_id)
    assert row["status"] == "approved" and row["reviewed_at"] is not None
    with db.session() as s:
        assert row["reviewed_by"] == s.execute(text("SELECT current_user")).scalar_one()
    assert row["edit_similarity"] == 1.0 and row["edited_by_human"] is False

    with db.session() as s, s.begin():
        s.execute(text("SET LOCAL mailsense.reviewer = 'ann'"))
        s.execute(text("UPDATE drafts SET status = 'approved' WHERE id = :id"), {"id": other})
    assert draft_row(db, other)["reviewed_by"] == "ann"


def test_sql_edit_marks_the_draft_as_a_persons_work_and_measures_the_change(db, draft_id):
    edited = GENERATED.replace("thirty seconds", "one minute")
    sql(db, "UPDATE drafts SET text = :t WHERE id = :id", t=edited, id=draft_id)
    row = draft_row(db, draft_id)
    assert row["status"] == "pending" and row["text"] == edited and row["generated_text"] == GENERATED
    assert row["edited_by_human"] is True and row["edited_at"] is not None
    assert 0.8 < row["edit_similarity"] < 1.0  # two words of twenty replaced

    sql(db, "UPDATE drafts SET text = 'Completely different words here.' WHERE id = :id", id=draft_id)
    assert draft_row(db, draft_id)["edit_similarity"] == 0.0


def test_sql_reject_keeps_the_reason(db, draft_id):
    sql(db, "UPDATE drafts SET status = 'rejected', reject_reason = 'wrong product' WHERE id = :id", id=draft_id)
    row = draft_row(db, draft_id)
    assert row["status"] == "rejected" and row["reject_reason"] == "wrong product" and row["reviewed_by"]


@pytest.mark.parametrize(("start", "path", "refused"), [
    ("pending", [], "sent"),  # nothing is sent without approval
    ("pending", [], "delivered"),
    ("pending", ["rejected"], "approved"),  # rejected is final
    ("pending", ["approved", "sent"], "pending"),
    ("pending", ["superseded"], "approved"),
    ("pending", ["approved"], "pending"),
    ("needs_human", [], "pending"),  # only the drafting stage redrafts
])
def test_invalid_transitions_are_refused_with_a_clear_error(db, start, path, refused):
    draft_id = add_draft(db, status=start)
    for status in path:
        sql(db, "UPDATE drafts SET status = :s WHERE id = :id", s=status, id=draft_id)
    current = path[-1] if path else start
    with pytest.raises(exc.IntegrityError, match=f"cannot change status from {current} to {refused}"):
        sql(db, "UPDATE drafts SET status = :s WHERE id = :id", s=refused, id=draft_id)


def test_allowed_path_to_sent_through_drafts_folder(db, draft_id):
    for status in ("approved", "delivered", "sent"):
        sql(db, "UPDATE drafts SET status = :s WHERE id = :id", s=status, id=draft_id)
    assert draft_row(db, draft_id)["status"] == "sent"


def test_a_needs_human_draft_without_text_cannot_be_approved_until_a_person_writes_it(db):
    draft_id = add_draft(db, status="needs_human", draft_text=None)
    with pytest.raises(exc.IntegrityError, match="cannot approve a draft without text"):
        sql(db, "UPDATE drafts SET status = 'approved' WHERE id = :id", id=draft_id)
    sql(db, "UPDATE drafts SET text = 'Hello, here is the answer.', status = 'approved' WHERE id = :id", id=draft_id)
    row = draft_row(db, draft_id)
    assert row["status"] == "approved" and row["edited_by_human"] is True
    assert row["generated_text"] is None and row["edit_similarity"] is None  # nothing was generated


def test_text_of_an_approved_draft_cannot_change(db, draft_id):
    sql(db, "UPDATE drafts SET status = 'approved' WHERE id = :id", id=draft_id)
    with pytest.raises(exc.IntegrityError, match="text of a approved draft cannot change"):
        sql(db, "UPDATE drafts SET text = 'later' WHERE id = :id", id=draft_id)


def test_inserts_and_status_changes_are_announced(db, db_url):
    with psycopg.connect(db_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as listener:
        listener.execute("LISTEN mailsense_drafts")
        draft_id = add_draft(db)
        sql(db, "UPDATE drafts SET text = 'edited, no status change' WHERE id = :id", id=draft_id)
        sql(db, "UPDATE drafts SET status = 'approved' WHERE id = :id", id=draft_id)
        payloads = [json.loads(n.payload) for n in listener.notifies(timeout=2.0, stop_after=2)]
    assert [n.get("status") for n in payloads] == ["pending", "approved"]
    assert payloads[0]["id"] == draft_id and payloads[0]["previous"] is None
    assert payloads[1] == {"id": draft_id, "status": "approved", "previous": "pending",
                           "message_id": payloads[0]["message_id"]}
