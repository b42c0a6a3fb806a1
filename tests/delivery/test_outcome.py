"""What the person did, read from the real Sent folder: sent as drafted, after edits, otherwise, without a draft."""

from __future__ import annotations

import threading
from email.message import EmailMessage
from typing import Any

import pytest

from daemon import status
from daemon.db.embedded import to_libpq_url
from daemon.delivery import stats, store
from daemon.delivery.deliver import Deliverer
from daemon.delivery.outcome import OutcomeWatcher, similarity
from daemon.metrics import REGISTRY
from tests.delivery.conftest import DRAFT_TEXT, add_draft, approve, draft_row, folder_messages, settings_for


def sent_reply(original_id: str, text: str, message_id: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "support@example.com"
    msg["To"] = "alice@example.org"
    msg["Subject"] = "Re: Wi-Fi"
    msg["Message-ID"] = message_id
    msg["In-Reply-To"] = original_id
    msg["References"] = f"<earlier@example.org> {original_id}"
    msg.set_content(text + "\n\nOn Wed, 25 Nov 2026, Alice wrote:\n> My Wi-Fi drops\n")
    return msg.as_bytes()


def delete_message(dovecot: Any, user: str, folder: str, message_id: str) -> None:
    """What a mail client does to a draft it sends: flag it deleted and expunge it."""
    with dovecot.connect(user) as client:
        client.select(folder)
        _, data = client.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
        for uid in data[0].split():
            client.uid("STORE", uid, "+FLAGS.SILENT", "(\\Deleted)")
            client.uid("EXPUNGE", uid)


@pytest.mark.unit
def test_similarity_ignores_the_quoted_history() -> None:
    assert similarity(DRAFT_TEXT, DRAFT_TEXT + "\n\nOn Mon, Alice wrote:\n> long quoted text " * 3) == 1.0
    assert similarity(DRAFT_TEXT, "Please call us.") < 0.7
    assert similarity(DRAFT_TEXT, DRAFT_TEXT.replace("Hello Alice", "Hi Alice")) >= 0.7


def test_replies_in_sent_record_what_the_person_did(db, dovecot, imap_password) -> None:  # type: ignore[no-untyped-def]
    user = imap_password
    settings = settings_for(dovecot, user)
    url = to_libpq_url(db.url)
    conn = store.connect(url)
    watcher = OutcomeWatcher(settings.accounts, threading.Event())
    as_drafted, edited, otherwise, undrafted = (add_draft(db, n) for n in range(1, 5))
    for draft_id, _ in (as_drafted, edited, otherwise):
        approve(db, draft_id)
    assert Deliverer(settings, url, threading.Event()).deliver_due(conn) == 3
    assert watcher.check(conn, settings.accounts[0]) == 0  # nothing sent yet: the checkpoint is set

    ours = {draft_id: draft_row(db, draft_id)["outgoing_message_id"] for draft_id, _ in (as_drafted, edited)}
    for (draft_id, original), text in ((as_drafted, DRAFT_TEXT.replace("Hello", "Hi")),
                                       (edited, "Please call our hotline, we will fix it on the phone.")):
        delete_message(dovecot, user, "Drafts", ours[draft_id])  # the client sends the draft
        dovecot.append(user, "Sent", sent_reply(original, text, ours[draft_id]), ["\\Seen"])
    dovecot.append(user, "Sent", sent_reply(otherwise[1], "I wrote my own answer.", "<own1@example.com>"))
    dovecot.append(user, "Sent", sent_reply(undrafted[1], "Answered by hand.", "<own2@example.com>"))

    assert watcher.check(conn, settings.accounts[0]) == 4
    outcomes = {draft_id: draft_row(db, draft_id) for draft_id, _ in (as_drafted, edited, otherwise, undrafted)}
    assert outcomes[as_drafted[0]]["outcome"] == "sent_as_drafted"
    assert outcomes[as_drafted[0]]["sent_similarity"] >= 0.7 and outcomes[as_drafted[0]]["status"] == "sent"
    assert outcomes[edited[0]]["outcome"] == "sent_after_edits" and outcomes[edited[0]]["sent_similarity"] < 0.7
    assert outcomes[edited[0]]["status"] == "sent"
    assert outcomes[otherwise[0]]["outcome"] == "discarded" and outcomes[otherwise[0]]["status"] == "superseded"
    assert outcomes[undrafted[0]]["outcome"] == "replied_without_draft"
    assert outcomes[undrafted[0]]["status"] == "superseded"  # it leaves the review queue
    assert folder_messages(dovecot, user, "Drafts") == []  # the untouched draft was removed
    assert watcher.check(conn, settings.accounts[0]) == 0  # read once: the checkpoint moved on
    conn.close()

    with db.session() as session:
        counts = stats.refresh_metrics(session)  # what `mailsense status` and /metrics show
    assert counts["sent_as_drafted"] == counts["sent_after_edits"] == counts["discarded"] == 1
    assert counts["accepted_rate"] == 0.25 and counts["edited_rate"] == 0.5
    assert REGISTRY.get_sample_value("mailsense_draft_outcomes", {"outcome": "replied_without_draft"}) == 1
    with db.session() as session:
        text = status.render(status.collect(session), [])
    assert "replies: 3 put into Drafts" in text
    assert "sent as drafted 1" in text and "accepted as drafted 25%, edited before sending 50%" in text


def test_an_approved_draft_is_not_delivered_once_the_person_replied(db, dovecot, imap_password) -> None:  # type: ignore[no-untyped-def]
    user = imap_password
    settings = settings_for(dovecot, user)
    url = to_libpq_url(db.url)
    conn = store.connect(url)
    watcher = OutcomeWatcher(settings.accounts, threading.Event())
    draft_id, original = add_draft(db, 1)
    approve(db, draft_id)  # approved, and the person answers by hand before the daemon delivers it
    assert watcher.check(conn, settings.accounts[0]) == 0
    dovecot.append(user, "Sent", sent_reply(original, "Answered by hand.", "<own@example.com>"))
    assert watcher.check(conn, settings.accounts[0]) == 1
    assert Deliverer(settings, url, threading.Event()).deliver_due(conn) == 0
    row = draft_row(db, draft_id)
    assert row["outcome"] == "replied_without_draft" and row["status"] == "approved"
    assert folder_messages(dovecot, user, "Drafts") == []
    conn.close()
