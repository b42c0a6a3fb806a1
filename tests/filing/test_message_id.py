"""The file stage never moves a message because its Message-ID merely resembles ours.

When the stored UID no longer holds our message, the stage searches the folder by Message-ID.
IMAP's SEARCH HEADER matches substrings, so crafted IDs (``@``, ``<@>``, ``<a>``) hit other
messages, and a folded ID carries CR/LF into the command line. Each case runs the real stage
against Dovecot and Postgres and checks which message ended up where.
"""

from __future__ import annotations

import hashlib
import imaplib

from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.filing.stage import FileStage
from daemon.ingest.store import ensure_folder, store_imap_message
from daemon.pipeline.router import Pipeline
from daemon.pipeline.worker import Worker


def raw_message(message_id: bytes, subject: str) -> bytes:
    return (b"From: Someone <someone@example.org>\r\nTo: support@example.com\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: " + message_id + b"\r\n"
            b"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\nBody of " + subject.encode() + b".\r\n")


class Mailbox:
    def __init__(self, db: Database, dovecot, user: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[user])
        self.db, self.dovecot, self.user = db, dovecot, user
        self.settings = Settings.model_validate({"accounts": [{
            "name": "test", "host": "127.0.0.1", "port": dovecot.tls_port, "tls": "implicit",
            "ca_file": str(dovecot.cert_path), "user": user, "password_env": "MAILSENSE_TEST_PASSWORD",
        }]})

    def append(self, message_id: bytes, subject: str) -> int:
        """A message only in the mailbox (a bystander the daemon has no business with)."""
        return self.dovecot.append(self.user, "INBOX", raw_message(message_id, subject))

    def spam(self, message_id: bytes, subject: str) -> tuple[int, int]:
        """A message appended and stored as ingestion would (raw bytes as fetched), judged spam."""
        uid = self.append(message_id, subject)
        raw = self.dovecot.fetch_raw(self.user, "INBOX", uid)
        with self.db.session() as s, s.begin():
            folder = ensure_folder(s, "test", "INBOX")
        with self.db.session() as s:
            store_imap_message(s, folder, self.dovecot.uidvalidity(self.user, "INBOX"), uid, raw, "file")
        with self.db.session() as s, s.begin():
            row_id = s.execute(text("UPDATE messages SET spam_verdict = 'spam' WHERE uid = :u AND folder_id = :f "
                                    "RETURNING id"), {"u": uid, "f": folder.id}).scalar_one()
        return row_id, uid

    def make_uid_stale(self, row_id: int) -> None:
        with self.db.session() as s, s.begin():
            s.execute(text("UPDATE messages SET uid = uid + 1000 WHERE id = :i"), {"i": row_id})

    def delete(self, uid: int) -> None:
        """Someone else deletes the message (by UID, never a plain EXPUNGE)."""
        with self.dovecot.connect(self.user) as client:
            client.select("INBOX")
            client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
            assert client.uid("EXPUNGE", str(uid))[0] == "OK"

    def file(self) -> None:
        stage = FileStage(self.settings)
        worker = Worker("test", self.db, Pipeline([stage]), self.settings.pipeline)
        for _ in range(10):  # bounded: a message that keeps failing must not hang the test
            if not worker.run_once():
                break
        stage.close()

    def subjects(self, folder: str) -> list[str]:
        return sorted(self.dovecot.fetch_raw(self.user, folder, uid).split(b"Subject: ")[1].split(b"\r\n")[0].decode()
                      for uid in self.dovecot.uids(self.user, folder))

    def action(self, row_id: int) -> tuple[str, str | None]:
        with self.db.session() as s:
            row = s.execute(text("SELECT status, detail FROM mail_actions WHERE message_id = :i"), {"i": row_id}).one()
        return row.status, row.detail


def test_bare_at_sign_never_moves_the_oldest_message(db, dovecot, mailbox_user, monkeypatch):
    box = Mailbox(db, dovecot, mailbox_user, monkeypatch)
    for i in range(3):
        box.append(f"<old-{i}@example.org>".encode(), f"old {i}")
    spam_id, spam_uid = box.spam(b"@", "spam with @")
    box.delete(spam_uid)  # the user already dealt with it
    box.file()
    assert box.subjects("Junk") == []
    assert box.subjects("INBOX") == ["old 0", "old 1", "old 2"]
    assert box.action(spam_id) == ("skipped", "no longer in INBOX (moved or deleted by someone else)")


def test_substring_matches_are_passed_over_for_the_exact_message(db, dovecot, mailbox_user, monkeypatch):
    """``<@>`` and ``<a>`` occur inside older messages' IDs, and ``<a>`` is even shared by a ham copy."""
    box = Mailbox(db, dovecot, mailbox_user, monkeypatch)
    box.append(b"<x<@>y@example.org>", "contains <@>")
    box.append(b"<b<a>@example.org>", "contains <a>")
    box.append(b"<a>", "same id, other bytes")
    at_id, _ = box.spam(b"<@>", "spam <@>")
    a_id, _ = box.spam(b"<a>", "spam <a>")
    box.make_uid_stale(at_id)
    box.make_uid_stale(a_id)
    box.file()
    assert box.subjects("Junk") == ["spam <@>", "spam <a>"]
    assert box.subjects("INBOX") == ["contains <@>", "contains <a>", "same id, other bytes"]
    assert box.action(at_id) == ("done", "moved to Junk")
    assert box.action(a_id) == ("done", "moved to Junk")


def test_a_gone_message_whose_id_matches_only_substrings_is_skipped(db, dovecot, mailbox_user, monkeypatch):
    box = Mailbox(db, dovecot, mailbox_user, monkeypatch)
    box.append(b"<b<a>@example.org>", "contains <a>")
    box.append(b"<a>", "same id, other bytes")
    spam_id, spam_uid = box.spam(b"<a>", "spam <a>")
    box.delete(spam_uid)
    box.file()
    assert box.subjects("Junk") == []
    assert box.subjects("INBOX") == ["contains <a>", "same id, other bytes"]
    assert box.action(spam_id) == ("skipped", "no longer in INBOX (moved or deleted by someone else)")


def test_folded_and_non_ascii_ids_are_confirmed_by_content_and_never_searched(db, dovecot, mailbox_user, monkeypatch):
    box = Mailbox(db, dovecot, mailbox_user, monkeypatch)
    box.append(b"<fold@example.org>", "bystander")
    in_place_id, _ = box.spam(b"<fold\r\n ed@example.org>", "folded, still at its UID")
    gone_id, gone_uid = box.spam(b"<fold\r\n @example.org>", "folded, deleted")
    stale_id, _ = box.spam("<caf\u00e9@example.org>".encode(), "non-ASCII, stale UID")
    with db.session() as s:
        stored = s.execute(text("SELECT message_id FROM messages WHERE id = :i"), {"i": in_place_id}).scalar_one()
    assert "\r\n" in stored  # the premise: the stored ID keeps its fold
    box.delete(gone_uid)
    box.make_uid_stale(stale_id)
    sent: list[bytes] = []  # every command the stage sends
    send = imaplib.IMAP4.send

    def recording_send(client: imaplib.IMAP4, data: bytes) -> None:
        sent.append(data)
        send(client, data)

    monkeypatch.setattr(imaplib.IMAP4, "send", recording_send)
    box.file()
    by_stage = list(sent)  # the stage's commands only, not the checks below
    assert any(b"UID MOVE" in data for data in by_stage)  # the recording works
    assert box.subjects("Junk") == ["folded, still at its UID"]
    assert box.subjects("INBOX") == ["bystander", "non-ASCII, stale UID"]
    assert box.action(in_place_id) == ("done", "moved to Junk")
    for row_id, kind in ((gone_id, "a control"), (stale_id, "a non-ASCII")):
        status, detail = box.action(row_id)
        assert status == "skipped" and detail is not None, (status, detail)
        assert detail.startswith("not at its UID in INBOX any more") and f"has {kind} character" in detail, detail
    # Neither ID reached the server: a CRLF would end the command and start another one.
    assert not [data for data in by_stage if b"fold\r\n" in data or b"caf" in data], by_stage


def test_a_message_without_message_id_moves_when_its_bytes_match(db, dovecot, mailbox_user, monkeypatch):
    """No Message-ID, nothing to search by: the stored UID is confirmed by the content hash alone."""
    box = Mailbox(db, dovecot, mailbox_user, monkeypatch)
    raw = raw_message(b"", "no id").replace(b"Message-ID: \r\n", b"")
    uid = dovecot.append(mailbox_user, "INBOX", raw)
    stored = dovecot.fetch_raw(mailbox_user, "INBOX", uid)
    with db.session() as s, s.begin():
        folder = ensure_folder(s, "test", "INBOX")
    with db.session() as s:
        store_imap_message(s, folder, dovecot.uidvalidity(mailbox_user, "INBOX"), uid, stored, "file")
    with db.session() as s, s.begin():
        row_id, message_id, sha = s.execute(text(
            "UPDATE messages SET spam_verdict = 'spam' RETURNING id, message_id, content_sha256")).one()
    assert message_id is None and sha == hashlib.sha256(stored).hexdigest()
    box.file()
    assert box.subjects("Junk") == ["no id"]
    assert box.action(row_id) == ("done", "moved to Junk")
