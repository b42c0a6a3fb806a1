"""`mailsense drafts ...` and `mailsense status` run as real commands against the embedded Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.review.conftest import GENERATED, add_draft, draft_row

pytestmark = pytest.mark.e2e  # runs `python -m daemon.cli`


def mailsense(db_url: str, state_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args],
        env={**os.environ, "MAILSENSE_CONFIG": "", "MAILSENSE_DATABASE__URL": db_url,
             "MAILSENSE_DAEMON__STATE_DIR": str(state_dir), **env},
        capture_output=True, text=True, timeout=120,
    )


def test_list_show_approve_edit_reject(db, db_url, state_dir, tmp_path):
    pending, human, other = add_draft(db), add_draft(db, status="needs_human", draft_text=None), add_draft(db)

    listed = mailsense(db_url, state_dir, "drafts", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [other, human, pending]

    shown = mailsense(db_url, state_dir, "drafts", "show", str(human))
    assert shown.returncode == 0, shown.stderr
    assert "Why a person is needed: no confident answer" in shown.stdout
    assert "My Wi-Fi keeps disconnecting" in shown.stdout and "Unplug the router, wait thirty seconds." in shown.stdout
    detail = json.loads(mailsense(db_url, state_dir, "drafts", "show", str(pending), "--json").stdout)
    assert detail["text"] == GENERATED and detail["sources"][0]["quoted"] is True

    refused = mailsense(db_url, state_dir, "drafts", "approve", str(human))
    assert refused.returncode == 1 and "cannot approve a draft without text" in refused.stderr
    assert "Traceback" not in refused.stderr

    reply = tmp_path / "reply.txt"
    reply.write_text("Hello Maria,\n\nplease send us the order number.\n")
    approved = mailsense(db_url, state_dir, "drafts", "approve", str(human), "--text-file", str(reply),
                         "--reviewer", "ann")
    assert approved.returncode == 0, approved.stderr
    row = draft_row(db, human)
    assert row["status"] == "approved" and row["reviewed_by"] == "ann" and row["text"] == reply.read_text()

    # $EDITOR is run on a file holding the draft; here it replaces one phrase.
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/thirty seconds/one minute/' \"$1\"\n")
    editor.chmod(0o755)
    edited = mailsense(db_url, state_dir, "drafts", "edit", str(pending), "--reviewer", "bob", EDITOR=str(editor))
    assert edited.returncode == 0, edited.stderr
    row = draft_row(db, pending)
    assert row["status"] == "pending" and row["edited_by_human"] is True and "one minute" in str(row["text"])
    assert mailsense(db_url, state_dir, "drafts", "approve", str(pending), "--reviewer", "bob").returncode == 0

    rejected = mailsense(db_url, state_dir, "drafts", "reject", str(other), "--reason", "duplicate", "--json")
    assert rejected.returncode == 0, rejected.stderr
    assert json.loads(rejected.stdout)["reject_reason"] == "duplicate"
    again = mailsense(db_url, state_dir, "drafts", "approve", str(other))
    assert again.returncode == 1 and "from rejected to approved (rejected is final)" in again.stderr

    status = mailsense(db_url, state_dir, "status")
    assert status.returncode == 0, status.stderr
    assert ("review: 3 decided, approved unchanged 0 (0%), approved after edits 2 (67%), rejected 1 (33%); "
            "0 awaiting review") in status.stdout
    assert "drafts: approved 2, rejected 1" in status.stdout


def test_reject_as_spam_teaches_the_filter(db, db_url, state_dir):
    draft = add_draft(db)
    junked = mailsense(db_url, state_dir, "drafts", "reject", str(draft), "--spam", "--reviewer", "ann")
    assert junked.returncode == 0, junked.stderr
    assert f"draft {draft} rejected as spam: now rejected" in junked.stdout
    row = draft_row(db, draft)
    assert row["status"] == "rejected" and row["reject_reason"] == "spam"
    status = mailsense(db_url, state_dir, "status")
    assert status.returncode == 0, status.stderr
    assert "review" in status.stdout and "spam" in status.stdout
    neither = mailsense(db_url, state_dir, "drafts", "reject", str(draft))
    assert neither.returncode == 2 and "one of the arguments --reason --spam is required" in neither.stderr
