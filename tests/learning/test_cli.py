"""``mailsense learn``, the sa-learn habit: files, stored messages and mailbox folders become labels."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from tests.helpers import REPO, make_message, write_config
from tests.learning.test_corrections import message_id_of


def mailsense(config, dovecot, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MAILSENSE_TEST_PASSWORD": dovecot.users[user]}
    return subprocess.run([sys.executable, "-m", "daemon.cli", "-c", str(config), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.e2e
def test_learn_files_messages_and_folders(db, db_url, dovecot, mailbox_user, state_dir, tmp_path):
    # No base or evaluation corpus: the token refresh after each `learn` then reads only the labels.
    config = write_config(state_dir, db_url, dovecot, mailbox_user, learning__base_corpus="none",
                          learning__eval_corpus="none", learning__schedule=False)
    spam_file, mbox = tmp_path / "spam.eml", tmp_path / "ham.mbox"
    spam_raw = make_message("win a prize")
    spam_file.write_bytes(spam_raw)
    mbox.write_bytes(b"".join(b"From someone@example.org Wed Nov 25 10:00:00 2026\n" + make_message(f"ham {i}") + b"\n"
                              for i in range(2)))
    done = mailsense(config, dovecot, mailbox_user, "learn", "spam", str(spam_file))
    assert done.returncode == 0, done.stderr
    assert "learned 1 message(s) as spam" in done.stdout
    assert "token statistics: skipped (no active model" in done.stdout  # it ran at once, and says why it did nothing
    done = mailsense(config, dovecot, mailbox_user, "learn", "ham", str(mbox))
    assert done.returncode == 0 and "learned 2 message(s) as ham" in done.stdout, done.stderr

    # The spam file was a mistake: learning it again as ham corrects it (the newest label counts).
    with db.session() as s:
        spam_id = s.execute(text("SELECT id FROM messages WHERE message_id = :m"),
                            {"m": message_id_of(spam_raw)}).scalar_one()
    done = mailsense(config, dovecot, mailbox_user, "learn", "ham", "--message", str(spam_id))
    assert done.returncode == 0, done.stderr
    assert mailsense(config, dovecot, mailbox_user, "learn", "ham", "--message", "999999").returncode != 0

    raws = [make_message(f"junk {i}") for i in range(3)]
    for raw in raws:
        dovecot.append(mailbox_user, "Junk", raw)
    done = mailsense(config, dovecot, mailbox_user, "learn", "--from-folder", "Junk=spam", "--limit", "2")
    assert done.returncode == 0, done.stderr
    assert "spam: 2/2" in done.stdout and "spam 2, ham 0 labelled" in done.stdout
    assert mailsense(config, dovecot, mailbox_user, "learn", "--from-folder", "Nowhere=spam").returncode != 0

    with db.session() as s:
        labels = s.execute(text("SELECT source, label, count(*) FROM spam_labels GROUP BY 1, 2 ORDER BY 1, 2")).all()
        stages = s.execute(text("SELECT DISTINCT stage FROM messages")).scalars().all()
    assert [tuple(r) for r in labels] == [("cli", "ham", 3), ("cli", "spam", 3)]
    assert stages == ["done"]  # learned, never queued for classification or drafting

    status = mailsense(config, dovecot, mailbox_user, "status")
    assert status.returncode == 0, status.stderr
    assert "labels: spam 2, ham 3" in status.stdout and "test / cli: spam 3, ham 3" in status.stdout
