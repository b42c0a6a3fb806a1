"""``mailsense models list|show|activate|rollback`` and ``mailsense retrain`` as commands, on a real database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from daemon.db.session import Database
from tests.helpers import REPO
from tests.learning.labelled import activate, add_labelled, write_corpus


def mailsense(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.cli", "-c", str(config), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def statuses(db: Database) -> dict[int, tuple[str, bool]]:
    with db.session() as s:
        return {r[0]: (r[1], r[2]) for r in s.execute(text("SELECT id, status, active FROM model_versions"))}


def test_retrain_by_hand_then_rollback_and_activate(tiny_model: Path, db: Database, db_url: str,
                                                   tmp_path: Path) -> None:
    config = tmp_path / "mailsense.toml"
    eval_dir = write_corpus(tmp_path / "eval", 12, seed=41)
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n[database]\nurl = "{db_url}"\n'
                      f'[learning]\nmin_per_class = 8\nbase_corpus = "none"\neval_corpus = "{eval_dir}"\n'
                      "threads = 1\n")
    first = activate(db, tiny_model)
    add_labelled(db, 30, seed=42)

    run = mailsense(config, "retrain", "tokens")
    assert run.returncode == 0, run.stderr
    assert "token_refresh: promoted" in run.stdout
    second = max(statuses(db))
    assert statuses(db) == {first: ("retired", False), second: ("active", True)}

    listing = mailsense(config, "models", "list")
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert "active" in lines[str(second)] and "retired" in lines[str(first)] and "FPR/recall" in lines[str(second)]
    shown = mailsense(config, "models", "show", str(second))
    assert shown.returncode == 0, shown.stderr
    assert "gate: promoted" in shown.stdout and "labels used: 24 (" in shown.stdout and "user_move:" in shown.stdout

    back = mailsense(config, "models", "rollback")
    assert back.returncode == 0, back.stderr
    assert statuses(db) == {first: ("active", True), second: ("rejected", False)}
    assert mailsense(config, "models", "rollback").returncode != 0  # nothing was active before the first

    again = mailsense(config, "models", "activate", str(second))
    assert again.returncode == 0, again.stderr
    assert statuses(db) == {first: ("retired", False), second: ("active", True)}
    missing = mailsense(config, "models", "activate", "999")
    assert missing.returncode != 0 and "no spam model version 999" in missing.stderr

    status = mailsense(config, "status")
    assert f"spam model: version {second} active" in status.stdout and "token_refresh: promoted" in status.stdout
