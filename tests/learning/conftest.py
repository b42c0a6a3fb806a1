"""A person's mail client beside Mailsense: a second IMAP client that moves, copies and flags mail."""

from __future__ import annotations

import contextlib
import imaplib
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from daemon.config import AccountSettings, Settings
from daemon.db.session import Database
from daemon.imap import connection
from daemon.ingest.imap import FolderWatcher
from daemon.learning.corrections import CorrectionTracker

_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


class MailClient:
    """What a person's mail client does, over plain imaplib (independent of Mailsense's IMAP code)."""

    def __init__(self, dovecot: Any, user: str) -> None:
        self.dovecot, self.user = dovecot, user

    @contextlib.contextmanager
    def selected(self, folder: str) -> Iterator[imaplib.IMAP4]:
        with self.dovecot.connect(self.user) as client:
            assert client.select(quoted(folder))[0] == "OK"
            yield client

    def uid_of(self, folder: str, message_id: str) -> int:
        with self.selected(folder) as client:
            typ, data = client.uid("SEARCH", "HEADER", "Message-ID", quoted(message_id))
        uids = [int(u) for u in (data[0] or b"").split()]
        assert typ == "OK" and len(uids) == 1, f"{message_id} in {folder}: {uids}"
        return uids[0]

    def move(self, source: str, message_id: str, target: str) -> None:
        """UID MOVE, as Thunderbird and most clients do it."""
        uid = self.uid_of(source, message_id)
        with self.selected(source) as client:
            assert client.uid("MOVE", str(uid), quoted(target))[0] == "OK"

    def append_and_delete(self, source: str, message_id: str, target: str) -> None:
        """mbsync's way: APPEND a copy of the bytes to the target, then delete and expunge the original."""
        uid = self.uid_of(source, message_id)
        raw = self.dovecot.fetch_raw(self.user, source, uid)
        self.dovecot.append(self.user, target, raw)
        with self.selected(source) as client:
            client.uid("STORE", str(uid), "+FLAGS.SILENT", "(\\Deleted)")
            assert client.uid("EXPUNGE", str(uid))[0] == "OK"

    def set_keyword(self, folder: str, message_id: str, keyword: str, remove: str = "") -> None:
        uid = self.uid_of(folder, message_id)
        with self.selected(folder) as client:
            if remove:
                client.uid("STORE", str(uid), "-FLAGS", f"({remove})")
            assert client.uid("STORE", str(uid), "+FLAGS", f"({keyword})")[0] == "OK"


@pytest.fixture
def client(dovecot, mailbox_user) -> MailClient:  # type: ignore[no-untyped-def]
    return MailClient(dovecot, mailbox_user)


def account_settings(dovecot: Any, user: str, **learning: object) -> Settings:
    return Settings.model_validate({
        "accounts": [{
            "name": "test", "host": "127.0.0.1", "port": dovecot.tls_port, "tls": "implicit",
            "ca_file": str(dovecot.cert_path), "user": user, "password_env": "MAILSENSE_TEST_PASSWORD",
            "folders": ["INBOX"], "start_from": "all",
            "drafts": {"own_addresses": ["support@example.com"]},
            "learning": learning,
        }],
    })


class Harness:
    """The ingest of INBOX and the correction tracker of one account, run step by step."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings, self.db = settings, db
        self.account: AccountSettings = settings.accounts[0]
        self.stop = threading.Event()
        self.tracker = CorrectionTracker(settings, self.account, db, self.stop)
        self.watcher = FolderWatcher(self.account, "INBOX", db, self.stop)
        self.mailbox = connection.connect(self.account)
        self.ingest_box = connection.connect(self.account)

    def ingest(self) -> int:
        self.ingest_box.folder.set("INBOX", readonly=True)
        return self.watcher.catch_up(self.ingest_box)

    def look(self) -> dict[str, int]:
        self.ingest()
        return dict(self.tracker.check(self.mailbox))

    def labels(self) -> list[tuple[str, str, str, str | None]]:
        with self.db.session() as s:
            rows = s.execute(text("SELECT m.message_id, l.label, l.source, l.detail FROM spam_labels l "
                                  "JOIN messages m ON m.id = l.message_id ORDER BY l.id")).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def close(self) -> None:
        connection.close(self.mailbox)
        connection.close(self.ingest_box)


@pytest.fixture
def harness_factory(db, dovecot, mailbox_user, monkeypatch) -> Iterator:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[mailbox_user])
    made: list[Harness] = []

    def make(**learning: object) -> Harness:
        harness = Harness(account_settings(dovecot, mailbox_user, **learning), db)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()
