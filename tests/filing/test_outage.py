"""An IMAP server that is down makes the file stage wait; the messages keep their attempts."""

from __future__ import annotations

from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.filing.stage import FileStage
from daemon.pipeline.router import Pipeline
from daemon.pipeline.worker import Worker
from tests.filing.test_stage import ingest, settings_for, subjects
from tests.helpers import free_port


def test_spam_waits_at_file_while_the_server_is_down_then_moves(db: Database, dovecot, mailbox_user, monkeypatch):
    monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[mailbox_user])
    up = settings_for(dovecot, mailbox_user)
    account = up.accounts[0].model_copy(update={"port": free_port()})  # nothing listens there
    down = Settings.model_validate({**up.model_dump(), "accounts": [account.model_dump()],
                                    "pipeline": {"retry_base_seconds": 0.01, "max_attempts": 2,
                                                 "dependency_wait_seconds": 0.01}})
    for i in range(3):
        ingest(db, dovecot, mailbox_user, f"cheap pills {i}", "spam")

    stage = FileStage(down)
    worker = Worker("test", db, Pipeline([stage]), down.pipeline)
    for _ in range(5):  # more rounds than max_attempts: an outage must never park
        worker.run_once()
    stage.close()
    with db.session() as s:
        rows = s.execute(text("SELECT stage, attempts, claims, lease_owner FROM messages")).all()
    assert [tuple(r) for r in rows] == [("file", 0, 0, None)] * 3
    assert subjects(dovecot, mailbox_user, "Junk") == []

    stage = FileStage(up)
    worker = Worker("test", db, Pipeline([stage]), up.pipeline)
    while worker.run_once():
        pass
    stage.close()
    assert sorted(subjects(dovecot, mailbox_user, "Junk")) == [b"cheap pills 0", b"cheap pills 1", b"cheap pills 2"]
