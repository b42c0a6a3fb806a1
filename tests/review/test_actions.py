"""The Python review API: the same UPDATEs as SQL, refusals as ReviewError, the queue and one draft in full."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.config import Settings
from daemon.drafts.stage import DraftStage
from daemon.kb.store import KnowledgeBase
from daemon.review.actions import ReviewError, approve, edit, junk, reject
from daemon.review.queue import draft_detail, list_queue
from tests.drafts.conftest import write_kb
from tests.drafts.test_stage import QUESTION, email, run, store
from tests.review.conftest import GENERATED, add_draft, draft_row


def test_approve_edit_reject(db, draft_id):
    second, third = add_draft(db, subject="Two"), add_draft(db, status="needs_human", draft_text=None)
    with db.session() as s, s.begin():
        draft = edit(s, draft_id, "ann", GENERATED + "\nAnn")
        assert draft.status == "pending" and draft.edited_by_human and draft.text.endswith("Ann")
        draft = approve(s, draft_id, "ann")
        assert draft.status == "approved" and draft.reviewed_by == "ann" and 0.9 < draft.edit_similarity < 1.0
        draft = approve(s, second, "bob", text="Hello Maria, a new answer.")
        assert draft.text == "Hello Maria, a new answer." and draft.edited_by_human and draft.reviewed_by == "bob"
        draft = reject(s, third, "bob", "customer already called")
        assert draft.status == "rejected" and draft.reject_reason == "customer already called"
    assert draft_row(db, draft_id)["status"] == "approved"  # committed by the caller's transaction


def test_refusals_are_review_errors_and_leave_the_transaction_usable(db, draft_id):
    empty = add_draft(db, status="needs_human", draft_text=None)
    with db.session() as s, s.begin():
        with pytest.raises(ReviewError, match="there is no draft 999"):
            approve(s, 999, "ann")
        with pytest.raises(ReviewError, match="cannot approve a draft without text"):
            approve(s, empty, "ann")
        with pytest.raises(ReviewError, match="give a reason"):
            reject(s, draft_id, "ann", "  ")
        with pytest.raises(ReviewError, match="the reply text is empty"):
            edit(s, draft_id, "ann", "")
        reject(s, draft_id, "ann", "off topic")
        with pytest.raises(ReviewError, match=r"from rejected to approved \(rejected is final\)"):
            approve(s, draft_id, "ann")
        assert s.execute(text("SELECT status FROM drafts WHERE id = :id"), {"id": draft_id}).scalar_one() == "rejected"


def test_queue_and_detail(db, draft_id):
    human = add_draft(db, status="needs_human", draft_text=None, subject="Billing",
                      body="Why was I charged twice?\n\nOn Monday, Support wrote:\n> Thanks for your order.\n")
    done = add_draft(db, subject="Done")
    with db.session() as s, s.begin():
        approve(s, done, "ann")
        items = list_queue(s)
        assert [i.draft_id for i in items] == [draft_id, human]
        assert items[0].sender == "Maria Lopez <maria@example.org>" and items[0].spam_verdict == "ham"
        assert items[0].preview.startswith("Hello Maria, Unplug the router")
        assert items[1].preview.startswith("Why was I charged twice?")  # no text yet: the question
        assert [i.draft_id for i in list_queue(s, status="needs_human")] == [human]
        with pytest.raises(ReviewError):
            list_queue(s, status="approved")
        detail = draft_detail(s, human)
    assert detail.status == "needs_human" and detail.reason == "no confident answer" and detail.text is None
    assert detail.new_text == "Why was I charged twice?" and detail.has_quoted_history
    assert detail.sources[0].text == "Unplug the router, wait thirty seconds." and detail.sources[0].quoted


@pytest.fixture
def settings() -> Settings:
    return Settings.model_validate({"drafts": {"enabled": True, "own_addresses": ["support@example.com"]}})


def test_an_sql_edit_survives_a_requeue_through_the_drafting_stage(db, embedder, settings, tmp_path: Path):
    KnowledgeBase(db, embedder).add([write_kb(tmp_path / "kb")])
    stage = DraftStage(settings, db, embedder=embedder)
    store(db, email("Wifi problem", QUESTION))
    run(db, stage, settings)
    generated = draft_row(db, 1)["text"]
    assert isinstance(generated, str) and "Unplug the router" in generated

    with db.session() as s, s.begin():  # plain SQL, without touching edited_by_human
        s.execute(text("UPDATE drafts SET text = 'Edited by Ann'"))
        s.execute(text("UPDATE messages SET stage = 'draft'"))
    run(db, stage, settings)
    row = draft_row(db, 1)
    assert row["text"] == "Edited by Ann" and row["edited_by_human"] is True and row["generated_text"] == generated

    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM drafts")).scalar_one() == 1


def test_acceptance_figures_for_status_and_metrics(db):
    from daemon.metrics import REGISTRY
    from daemon.review.stats import acceptance_lines, update_metrics

    unchanged, edited, rejected, _waiting = (add_draft(db, subject=f"m{i}") for i in range(4))
    with db.session() as s, s.begin():
        approve(s, unchanged, "ann")
        approve(s, edited, "ann", text=GENERATED.replace("thirty seconds", "a minute"))
        reject(s, rejected, "ann", "wrong product")
        figures = update_metrics(s)
    assert (figures.approved_unchanged, figures.approved_edited, figures.rejected, figures.awaiting) == (1, 1, 1, 1)
    assert REGISTRY.get_sample_value("mailsense_draft_reviews", {"outcome": "rejected"}) == 1
    assert REGISTRY.get_sample_value("mailsense_draft_acceptance_ratio") == pytest.approx(2 / 3)
    assert REGISTRY.get_sample_value("mailsense_drafts_awaiting_review") == 1
    [line] = acceptance_lines(figures)
    assert line.startswith("review: 3 decided, approved unchanged 1 (33%), approved after edits 1 (33%), "
                           "rejected 1 (33%); 1 awaiting review; edited drafts kept 8")


def test_junk_rejects_the_draft_and_records_a_spam_label(db, draft_id):
    with db.session() as s, s.begin():
        draft = junk(s, draft_id, "ann")
        assert draft.status == "rejected" and draft.reject_reason == "spam" and draft.reviewed_by == "ann"
    with db.session() as s:
        labels = s.execute(text("SELECT l.label, l.source, l.detail FROM spam_labels l JOIN drafts d "
                                "ON d.message_id = l.message_id WHERE d.id = :id"), {"id": draft_id}).all()
    assert [tuple(r) for r in labels] == [("spam", "review", f"draft {draft_id} junked by ann")]
    with db.session() as s, s.begin(), pytest.raises(ReviewError, match="is rejected: only a draft awaiting review"):
        junk(s, draft_id, "ann")  # a refused transition records no second label
    with db.session() as s:
        assert s.execute(text("SELECT count(*) FROM spam_labels")).scalar_one() == 1
