"""The file stage against real Dovecot and Postgres: Junk moves and keywords, exactly once."""

from __future__ import annotations

from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.filing.stage import FileStage
from daemon.ingest.store import ensure_folder, store_imap_message
from daemon.pipeline.router import Pipeline
from daemon.pipeline.worker import Worker
from tests.helpers import make_message


def settings_for(dovecot, user: str, **spam_rules: object) -> Settings:
    return Settings.model_validate({
        "accounts": [{
            "name": "test", "host": "127.0.0.1", "port": dovecot.tls_port, "tls": "implicit",
            "ca_file": str(dovecot.cert_path), "user": user, "password_env": "MAILSENSE_TEST_PASSWORD",
            "spam": spam_rules,
        }],
    })


def ingest(db: Database, dovecot, user: str, subject: str, verdict: str) -> tuple[int, str]:
    """Append a message and store it as ingestion would, with a verdict, waiting at the file stage."""
    raw = make_message(subject)
    uid = dovecot.append(user, "INBOX", raw)
    with db.session() as s, s.begin():
        folder = ensure_folder(s, "test", "INBOX")
    with db.session() as s:
        store_imap_message(s, folder, dovecot.uidvalidity(user, "INBOX"), uid, raw, "file")
    with db.session() as s, s.begin():
        row = s.execute(text("UPDATE messages SET spam_verdict = :v WHERE uid = :u AND folder_id = :f "
                             "RETURNING id, message_id"), {"v": verdict, "u": uid, "f": folder.id}).one()
    return row.id, row.message_id


def run_file_stage(db: Database, settings: Settings) -> None:
    stage = FileStage(settings)
    worker = Worker("test", db, Pipeline([stage]), settings.pipeline)
    while worker.run_once():
        pass
    stage.close()


def subjects(dovecot, user: str, folder: str) -> list[bytes]:
    return [dovecot.fetch_raw(user, folder, uid).split(b"Subject: ")[1].split(b"\r\n")[0]
            for uid in dovecot.uids(user, folder)]


def test_spam_moves_to_junk_with_keyword_ham_stays_unsure_is_flagged(db, dovecot, mailbox_user, monkeypatch):
    monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[mailbox_user])
    settings = settings_for(dovecot, mailbox_user)
    ingest(db, dovecot, mailbox_user, "cheap pills", "spam")
    ingest(db, dovecot, mailbox_user, "invoice question", "ham")
    ingest(db, dovecot, mailbox_user, "maybe", "unsure")
    run_file_stage(db, settings)

    assert subjects(dovecot, mailbox_user, "Junk") == [b"cheap pills"]
    assert sorted(subjects(dovecot, mailbox_user, "INBOX")) == [b"invoice question", b"maybe"]
    [junk_uid] = dovecot.uids(mailbox_user, "Junk")
    assert "$Junk" in dovecot.flags(mailbox_user, "Junk", junk_uid)
    flags = {s: dovecot.flags(mailbox_user, "INBOX", u) for s, u in zip(
        subjects(dovecot, mailbox_user, "INBOX"), dovecot.uids(mailbox_user, "INBOX"), strict=True)}
    assert "$Unsure" in flags[b"maybe"] and not flags[b"invoice question"] - {"\\Recent"}
    with db.session() as s:
        stages = dict(s.execute(text("SELECT spam_verdict, stage FROM messages")).all())
        actions = s.execute(text("SELECT verdict, status FROM mail_actions ORDER BY verdict")).all()
    # Spam and unsure go no further (no draft); ham goes on to the next stage.
    assert stages == {"spam": "done", "unsure": "done", "ham": "done"}
    assert [tuple(a) for a in actions] == [("spam", "done"), ("unsure", "done")]


def test_a_crash_between_move_and_record_does_not_move_twice(db, dovecot, mailbox_user, monkeypatch):
    monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[mailbox_user])
    settings = settings_for(dovecot, mailbox_user)
    ingest(db, dovecot, mailbox_user, "spam once", "spam")
    run_file_stage(db, settings)
    assert subjects(dovecot, mailbox_user, "Junk") == [b"spam once"]
    # Simulate a kill after the IMAP MOVE but before the outcome was recorded.
    with db.session() as s, s.begin():
        s.execute(text("UPDATE mail_actions SET status = 'pending', detail = NULL, done_at = NULL"))
        s.execute(text("UPDATE messages SET stage = 'file'"))
    run_file_stage(db, settings)
    assert subjects(dovecot, mailbox_user, "Junk") == [b"spam once"]
    assert subjects(dovecot, mailbox_user, "INBOX") == []
    with db.session() as s:
        status, detail = s.execute(text("SELECT status, detail FROM mail_actions")).one()
    assert status == "done" and "already in Junk" in detail


def test_a_crash_before_the_move_moves_once(db, dovecot, mailbox_user, monkeypatch):
    monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[mailbox_user])
    message_id, _ = ingest(db, dovecot, mailbox_user, "pending spam", "spam")
    with db.session() as s, s.begin():  # the plan was committed, then the daemon died
        s.execute(text("INSERT INTO mail_actions (message_id, verdict, keyword, destination) "
                       "VALUES (:m, 'spam', '$Junk', '\\Junk')"), {"m": message_id})
    run_file_stage(db, settings_for(dovecot, mailbox_user))
    assert subjects(dovecot, mailbox_user, "Junk") == [b"pending spam"]


def test_a_stale_uid_is_never_acted_on_blindly(db, dovecot, mailbox_user, monkeypatch):
    monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[mailbox_user])
    spam_id, _ = ingest(db, dovecot, mailbox_user, "the spam", "spam")
    bystander_id, _ = ingest(db, dovecot, mailbox_user, "innocent bystander", "ham")
    bystander_uid = max(dovecot.uids(mailbox_user, "INBOX"))
    with db.session() as s, s.begin():  # our row now points at a UID that holds another message
        s.execute(text("UPDATE messages SET uid = uid + 1000, stage = 'done' WHERE id = :i"), {"i": bystander_id})
        s.execute(text("UPDATE messages SET uid = :u WHERE id = :i"), {"u": bystander_uid, "i": spam_id})
    run_file_stage(db, settings_for(dovecot, mailbox_user, move_spam=True))
    assert subjects(dovecot, mailbox_user, "Junk") == [b"the spam"]
    assert subjects(dovecot, mailbox_user, "INBOX") == [b"innocent bystander"]


def test_other_deleted_messages_survive_a_move(db, dovecot, mailbox_user, monkeypatch):
    """The imaplib trap: a fallback EXPUNGE would remove messages the user had marked \\Deleted."""
    monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[mailbox_user])
    dovecot.append(mailbox_user, "INBOX", make_message("marked deleted by the user"), flags=("\\Deleted",))
    ingest(db, dovecot, mailbox_user, "spam to move", "spam")
    run_file_stage(db, settings_for(dovecot, mailbox_user))
    assert subjects(dovecot, mailbox_user, "INBOX") == [b"marked deleted by the user"]
