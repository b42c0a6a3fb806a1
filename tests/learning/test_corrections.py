"""Corrections made in a person's mail client become labels: real Dovecot, real Postgres, real filing stage."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.utils import make_msgid

from sqlalchemy import text

from daemon.filing.stage import FileStage
from daemon.pipeline.router import Pipeline
from daemon.pipeline.worker import Worker
from tests.helpers import make_message
from tests.learning.conftest import Harness


def message_id_of(raw: bytes) -> str:
    found = re.search(rb"Message-ID: (<[^>]+>)", raw)
    assert found
    return found.group(1).decode()


def deliver(dovecot, user: str, subject: str, folder: str = "INBOX", sender: str = "alice@example.org",
            flags: tuple[str, ...] = ()) -> str:
    raw = make_message(subject, sender=sender)
    dovecot.append(user, folder, raw, flags=flags)
    return message_id_of(raw)


def file_as(harness: Harness, message_id: str, verdict: str) -> None:
    """Give an ingested message a verdict and run the real file stage on it (spam goes to Junk)."""
    with harness.db.session() as s, s.begin():
        s.execute(text("UPDATE messages SET spam_verdict = :v, stage = 'file' WHERE message_id = :m"),
                  {"v": verdict, "m": message_id})
    stage = FileStage(harness.settings)
    worker = Worker("test", harness.db, Pipeline([stage]), harness.settings.pipeline)
    while worker.run_once():
        pass
    stage.close()


def test_filed_spam_moved_back_to_inbox_is_ham_and_our_own_move_is_no_label(
        harness_factory, dovecot, mailbox_user, client):
    harness = harness_factory()
    mid = deliver(dovecot, mailbox_user, "quarterly invoice")
    assert harness.look() == {}  # the first look is the baseline
    file_as(harness, mid, "spam")
    assert len(dovecot.uids(mailbox_user, "Junk")) == 1
    assert harness.look() == {} and harness.labels() == []  # the filing stage's move is not a person's label

    client.move("Junk", mid, "INBOX")
    assert harness.look() == {"user_move": 1}
    assert harness.labels() == [(mid, "ham", "user_move", "moved from Junk to INBOX")]
    assert harness.look() == {}  # nothing twice


def test_moved_into_junk_is_spam_and_junk_to_trash_is_no_label(harness_factory, dovecot, mailbox_user, client):
    harness = harness_factory()
    dovecot.create_folder(mailbox_user, "Trash")
    spam, kept = deliver(dovecot, mailbox_user, "cheap pills"), deliver(dovecot, mailbox_user, "meeting notes")
    harness.look()
    client.move("INBOX", spam, "Junk")
    assert harness.look() == {"user_move": 1}
    client.move("Junk", spam, "Trash")
    client.move("INBOX", kept, "Trash")
    assert harness.look() == {}
    assert harness.labels() == [(spam, "spam", "user_move", "moved from INBOX to Junk")]


def test_append_and_delete_moves_are_matched_by_message_id_and_bytes_and_junk_subfolders_count(
        harness_factory, dovecot, mailbox_user, client):
    harness = harness_factory()
    dovecot.create_folder(mailbox_user, "Junk/Phishing")
    dovecot.create_folder(mailbox_user, "Archive")
    mid = deliver(dovecot, mailbox_user, "verify your account")
    harness.look()
    client.append_and_delete("INBOX", mid, "Junk/Phishing")
    assert harness.look() == {"user_move": 1}
    client.append_and_delete("Junk/Phishing", mid, "Archive")  # a folder nobody ingests
    assert harness.look() == {"user_move": 1}
    assert [(label, detail) for _, label, _, detail in harness.labels()] == [
        ("spam", "moved from INBOX to Junk/Phishing"), ("ham", "moved from Junk/Phishing to Archive")]


def test_same_message_id_with_other_bytes_is_not_taken_for_ours(harness_factory, dovecot, mailbox_user):
    harness = harness_factory()
    mid = deliver(dovecot, mailbox_user, "original")
    harness.look()
    impostor = EmailMessage()
    impostor["From"], impostor["Subject"], impostor["Message-ID"] = "x@example.net", "other bytes", mid
    impostor.set_content("different body\n")
    dovecot.append(mailbox_user, "Junk", impostor.as_bytes())
    assert harness.look() == {} and harness.labels() == []


def test_client_keywords_are_labels_but_not_our_own(harness_factory, dovecot, mailbox_user, client):
    harness = harness_factory()
    filed, other = deliver(dovecot, mailbox_user, "newsletter"), deliver(dovecot, mailbox_user, "promo")
    harness.look()
    file_as(harness, filed, "spam")  # Junk with our $Junk keyword
    assert harness.look() == {}
    client.set_keyword("Junk", filed, "$NotJunk", remove="$Junk")  # Thunderbird's "Not junk" button
    client.set_keyword("INBOX", other, "$Junk")
    assert harness.look() == {"client_keyword": 2}
    assert sorted((m, label) for m, label, _, _ in harness.labels()) == sorted([(filed, "ham"), (other, "spam")])
    assert harness.look() == {}


def test_a_reply_from_the_account_marks_its_thread_ham_and_its_recipient_a_correspondent(
        harness_factory, dovecot, mailbox_user):
    harness = harness_factory()
    dovecot.create_folder(mailbox_user, "Sent")
    question = deliver(dovecot, mailbox_user, "how do I reset my password?", sender="carol@example.net")
    harness.look()
    reply = EmailMessage()
    reply["From"], reply["To"] = "Support <support@example.com>", "carol@example.net"
    reply["Subject"], reply["Message-ID"] = "Re: how do I reset my password?", make_msgid(domain="example.com")
    reply["In-Reply-To"] = reply["References"] = question
    reply.set_content("Click 'forgot password'.\n")
    dovecot.append(mailbox_user, "Sent", reply.as_bytes())
    assert harness.look() == {"replied_thread": 1}
    follow_up = deliver(dovecot, mailbox_user, "thanks, it worked", sender="carol@example.net")
    assert harness.look() == {"wrote_to_sender": 1}
    with harness.db.session() as s:
        weights = dict(s.execute(text("SELECT source, weight FROM spam_labels")).all())
    assert weights == {"replied_thread": 1.0, "wrote_to_sender": 0.5}
    assert [m for m, *_ in harness.labels()] == [question, follow_up]


def test_corrections_of_a_confident_verdict_are_learned_every_time(harness_factory, dovecot, mailbox_user, client):
    """rspamd #947: an "already learned" guard refused exactly the corrections that matter."""
    harness = harness_factory()
    mid = deliver(dovecot, mailbox_user, "your parcel")
    harness.look()
    file_as(harness, mid, "spam")
    with harness.db.session() as s, s.begin():
        s.execute(text("UPDATE messages SET spam_score = 0.9999 WHERE message_id = :m"), {"m": mid})
    harness.look()
    client.move("Junk", mid, "INBOX")
    assert harness.look() == {"user_move": 1}
    client.move("INBOX", mid, "Junk")  # changed their mind after all: this time it is their move, not ours
    assert harness.look() == {"user_move": 1}
    client.move("Junk", mid, "INBOX")
    assert harness.look() == {"user_move": 1}
    assert [label for _, label, _, _ in harness.labels()] == ["ham", "spam", "ham"]
    with harness.db.session() as s:
        from daemon.training.data import load_database

        [example] = load_database(s)
    assert example.label == 0  # the newest label counts for training


def test_spam_filed_before_the_tracker_first_looked_and_moved_back_is_ham(
        harness_factory, dovecot, mailbox_user, client):
    harness = harness_factory()
    mid = deliver(dovecot, mailbox_user, "order confirmation")
    harness.ingest()
    file_as(harness, mid, "spam")
    assert harness.look() == {}  # baseline: the tracker never saw it arrive in Junk
    client.move("Junk", mid, "INBOX")
    assert harness.look() == {"user_move": 1}
    assert harness.labels() == [(mid, "ham", "user_move", "moved from Junk to INBOX")]


def age_filings(harness: Harness, days: float) -> None:
    """Move the filing stage's recorded times back, as if ``days`` had passed since it filed."""
    with harness.db.session() as s, s.begin():
        s.execute(text("UPDATE mail_actions SET done_at = done_at - make_interval(secs => :s)"),
                  {"s": days * 86400})


def test_spam_left_in_junk_past_the_grace_period_is_learned_as_spam_and_rescued_spam_is_not(
        harness_factory, dovecot, mailbox_user, client):
    harness = harness_factory(junk_grace_days=3)
    dovecot.create_folder(mailbox_user, "Trash")
    left, rescued, deleted = (deliver(dovecot, mailbox_user, s) for s in ("cheap meds", "invoice 42", "win big"))
    assert harness.look() == {}
    for mid in (left, rescued, deleted):
        file_as(harness, mid, "spam")
    assert len(dovecot.uids(mailbox_user, "Junk")) == 3
    assert harness.look() == {}  # within the grace period nothing is learned from Junk
    client.move("Junk", rescued, "INBOX")
    client.move("Junk", deleted, "Trash")
    age_filings(harness, 2.9)
    assert harness.look() == {"user_move": 1}  # only the rescue, still inside the grace period
    age_filings(harness, 0.2)
    assert harness.look() == {"left_in_junk": 2}
    by_message = {mid: (label, source) for mid, label, source, _ in harness.labels()}
    assert by_message == {rescued: ("ham", "user_move"), left: ("spam", "left_in_junk"),
                          deleted: ("spam", "left_in_junk")}
    with harness.db.session() as s:
        weights = s.execute(text("SELECT DISTINCT weight FROM spam_labels WHERE source = 'left_in_junk'")).scalars()
        assert list(weights) == [0.5]
    assert harness.look() == {}  # nothing twice


def test_junk_grace_days_zero_learns_nothing_from_junk(harness_factory, dovecot, mailbox_user):
    harness = harness_factory(junk_grace_days=0)
    mid = deliver(dovecot, mailbox_user, "cheap meds")
    harness.look()
    file_as(harness, mid, "spam")
    age_filings(harness, 30)
    assert harness.look() == {} and harness.labels() == []
