"""Filing under concurrency: several workers, two watched folders, mail arriving while they work.

The file stage used to share one imaplib connection per account between all worker threads;
one thread's SELECT could land between another's identity check and its UID MOVE, so moves
timed out or a message was recorded "no longer in INBOX" while it still sat there. Here the
real daemon runs with 4 workers against Dovecot and Postgres while a few hundred messages are
appended to two folders, and afterwards the mailbox must match the verdicts exactly.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.db.session import Database
from tests.helpers import wait_for
from tests.training.samples import make_message

PER_FOLDER = 150  # 300 messages in all, about half of them spam
FOLDERS = ("INBOX", "Support")
_FETCH_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")


def _append_all(dovecot, user: str, folder: str, messages: list[bytes], errors: list[BaseException]) -> None:
    """APPEND over one connection, a little at a time, so the daemon works while mail arrives."""
    try:
        with dovecot.connect(user) as client:
            for index, raw in enumerate(messages):
                typ, data = client.append(f'"{folder}"', None, None, raw)
                assert typ == "OK", data
                if index % 10 == 9:
                    time.sleep(0.05)
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def _folder_contents(dovecot, user: str, folder: str) -> list[tuple[str, set[str]]]:
    """(sha256 of the raw bytes, flags) of every message in ``folder``."""
    with dovecot.connect(user) as client:
        typ, _ = client.select(f'"{folder}"', readonly=True)
        assert typ == "OK"
        typ, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
        assert typ == "OK"
    contents = []
    for item in data:
        if isinstance(item, tuple):
            flags = _FETCH_FLAGS.search(item[0])
            contents.append((hashlib.sha256(item[1]).hexdigest(),
                             set(flags.group(1).decode().split()) if flags else set()))
    return contents


# Generous: the session's tiny model is trained inside this budget when this test runs first, and the
# CPU is shared. The test itself takes well under two minutes on an idle machine.
@pytest.mark.timeout(600)
def test_four_workers_two_folders_file_every_verdict_exactly_once(
    daemon_factory, dovecot, mailbox_user: str, db: Database, tiny_model: Path
):
    started = time.monotonic()
    dovecot.create_folder(mailbox_user, "Support")
    rng = random.Random(424)
    batches = {folder: [make_message(rng.random() < 0.5, rng) for _ in range(PER_FOLDER)] for folder in FOLDERS}
    daemon = daemon_factory(
        spam__enabled=True, spam__model_dir=str(tiny_model), daemon__workers=4,
        account__folders=list(FOLDERS), pipeline__max_attempts=3,
    ).start()
    daemon.wait_log("running:", 60)
    errors: list[BaseException] = []
    appenders = [threading.Thread(target=_append_all, args=(dovecot, mailbox_user, folder, raws, errors))
                 for folder, raws in batches.items()]
    for thread in appenders:
        thread.start()
    for thread in appenders:
        thread.join(120)
    assert not errors, errors
    total = PER_FOLDER * len(FOLDERS)

    def settled() -> bool:
        with db.session() as s:
            stored, open_ = s.execute(text(
                "SELECT count(*), count(*) FILTER (WHERE stage NOT IN ('done', 'parked', 'quarantined')) "
                "FROM messages")).one()
            pending = s.execute(text("SELECT count(*) FROM mail_actions WHERE status = 'pending'")).scalar_one()
        return stored == total and open_ == 0 and pending == 0

    wait_for(settled, 150, f"all {total} messages stored, classified and filed", daemon.log)
    assert daemon.terminate() == 0

    with db.session() as s:
        rows = s.execute(text(
            "SELECT m.id, f.name AS folder, m.content_sha256, m.spam_verdict, m.stage, m.last_error, "
            "a.status, a.detail FROM messages m JOIN folders f ON f.id = m.folder_id "
            "LEFT JOIN mail_actions a ON a.message_id = m.id ORDER BY m.id")).all()
    assert len(rows) == total
    assert [r for r in rows if r.stage != "done"] == [], "messages that did not finish"
    verdicts = Counter(r.spam_verdict for r in rows)
    assert verdicts["spam"] > 20 and verdicts["ham"] > 20, verdicts  # the test means something

    # Every planned action was carried out, and only the planned ones.
    for r in rows:
        if r.spam_verdict == "spam":
            assert (r.status, r.detail) == ("done", "moved to Junk"), r
        elif r.spam_verdict == "unsure":
            assert (r.status, r.detail) == ("done", "keyword $Unsure"), r
        else:
            assert r.status is None, r

    # Junk holds exactly the spam, each once, flagged; nothing else left its folder.
    junk = _folder_contents(dovecot, mailbox_user, "Junk")
    assert Counter(sha for sha, _ in junk) == Counter(r.content_sha256 for r in rows if r.spam_verdict == "spam")
    assert all("$Junk" in flags for _, flags in junk)
    for folder in FOLDERS:
        here = _folder_contents(dovecot, mailbox_user, folder)
        expected = [r for r in rows if r.folder == folder and r.spam_verdict != "spam"]
        assert Counter(sha for sha, _ in here) == Counter(r.content_sha256 for r in expected), folder
        unsure = {r.content_sha256 for r in expected if r.spam_verdict == "unsure"}
        assert all(("$Unsure" in flags) == (sha in unsure) for sha, flags in here), folder
    print(f"\n{total} messages, verdicts {dict(verdicts)}, {time.monotonic() - started:.1f}s")
