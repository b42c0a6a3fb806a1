"""`mailsense run --demo` with no mailbox: sample mail, customer questions, a demo KB, drafts to review."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.db.session import Database
from tests.helpers import REPO, wait_for

pytestmark = pytest.mark.e2e  # runs `mailsense run`


def test_the_demo_produces_drafts_to_review(db: Database, db_url: str, state_dir: Path) -> None:
    log_path = state_dir / "demo.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MAILSENSE_CONFIG": "", "MAILSENSE_DATABASE__URL": db_url,
           "MAILSENSE_DAEMON__STATE_DIR": str(state_dir),
           "MAILSENSE_SPAM__ENABLED": "false"}  # no starter model in tests: the spam stage is off
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "daemon.cli", "run", "--demo"], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        def drafted() -> list[tuple[str, str]]:
            with db.session() as s:
                done = s.execute(text("SELECT count(*) FROM messages WHERE stage <> 'done'")).scalar_one()
                if done:
                    return []
                return [(r.subject, r.status) for r in s.execute(text(
                    "SELECT m.subject, d.status FROM drafts d JOIN messages m ON m.id = d.message_id ORDER BY d.id"))]

        found = wait_for(drafted, 240, "every demo message processed", log_path.read_text)
    finally:
        proc.terminate()
        proc.wait(30)
    by_subject = dict(found)
    assert by_subject["Lamp will not connect to Wi-Fi"] == "superseded"  # the customer wrote again
    assert by_subject["Re: Lamp will not connect to Wi-Fi"] == "pending"
    assert by_subject["How do I reset the lamp?"] == "pending"
    assert by_subject["Returning my order"] == "pending"
    assert by_subject["Shipping to Iceland"] == "needs_human"  # the KB says nothing about shipping
    with db.session() as s:
        queue = s.execute(text("SELECT subject FROM review_queue")).scalars().all()
        reset = s.execute(text("SELECT d.text FROM drafts d JOIN messages m ON m.id = d.message_id "
                               "WHERE m.subject = 'How do I reset the lamp?'")).scalar_one()
    assert len(queue) == 4
    assert "five times" in reset
    assert "mailsense drafts list" in log_path.read_text()

