"""End to end: the scheduler inside ``mailsense run`` retrains, gates, promotes, and the daemons switch.

Two daemons share one database but not a state directory (two hosts): the retrain runs once
(the other daemon records a skip), and the daemon that did not train loads the promoted version
from the artifacts stored in Postgres.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from daemon.db.session import Database
from tests.helpers import REPO, DaemonProcess, wait_for, write_config
from tests.learning.labelled import activate, add_labelled, write_corpus
from tests.training.samples import make_message


def learning_overrides(eval_dir: Path) -> dict[str, object]:
    return {
        "spam__enabled": True, "spam__reload_seconds": 1,
        "learning__token_refresh_seconds": 3, "learning__fine_tune_cron": "", "learning__fine_tune_after_labels": 0,
        "learning__min_per_class": 8, "learning__base_corpus": "none", "learning__eval_corpus": str(eval_dir),
        "learning__held_out_fraction": 0.25, "learning__threads": 1,
    }


def retrains(db: Database) -> list[tuple[str, str, str, int | None]]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(text(
            "SELECT outcome, instance, coalesce(detail, ''), version_id FROM job_runs WHERE job = 'token_refresh' "
            "ORDER BY id"))]


def test_two_daemons_retrain_once_from_the_scheduler_and_a_third_start_loads_it_from_postgres(
        daemon_factory, dovecot, mailbox_user: str, db: Database, db_url: str, tiny_model: Path,
        tmp_path: Path) -> None:
    live = activate(db, tiny_model)
    add_labelled(db, 32, seed=31)
    overrides = learning_overrides(write_corpus(tmp_path / "eval", 12, seed=32))
    first = daemon_factory(**overrides).start()
    other_state = tmp_path / "host-b"
    other_state.mkdir()
    other_state.chmod(0o755)
    env = {"MAILSENSE_TEST_PASSWORD": dovecot.users[mailbox_user]}
    second = DaemonProcess(write_config(other_state, db_url, dovecot, mailbox_user, **overrides), env=env).start()
    logs = lambda: first.log()[-3000:] + "\n=== second ===\n" + second.log()[-3000:]  # noqa: E731
    try:
        wait_for(lambda: any(r[0] == "promoted" for r in retrains(db)), 240, "a promoted retrain", logs)
        promoted = next(r[3] for r in retrains(db) if r[0] == "promoted")
        assert promoted is not None and promoted != live
        # both daemons ran the timetable; exactly one of them trained, the other skipped
        wait_for(lambda: len({r[1] for r in retrains(db)}) == 2, 60, "runs recorded by both daemons", logs)
        assert [r[0] for r in retrains(db)].count("promoted") == 1, retrains(db)
        assert all(r[0] == "skipped" for r in retrains(db) if r[0] != "promoted"), retrains(db)
        # both running daemons switch to it without a restart
        needle = f"spam model version {promoted} loaded"
        wait_for(lambda: needle in first.log() and needle in second.log(), 60, "both daemons on the new version", logs)
    finally:
        codes = [first.terminate(), second.terminate()]
    assert codes == [0, 0]

    with db.session() as s:
        status, sha, path = s.execute(text("SELECT status, sha256, path FROM model_versions WHERE id = :v"),
                                      {"v": promoted}).one()
    assert status == "active"
    # Another host: the directory the trainer wrote is not there; the version comes from Postgres.
    Path(path).rename(Path(path).with_name("hidden"))
    third_state = tmp_path / "host-c"
    third_state.mkdir()
    third_state.chmod(0o755)
    third = DaemonProcess(write_config(third_state, db_url, dovecot, mailbox_user, **overrides), env=env).start()
    try:
        rng = random.Random(33)
        for _ in range(2):
            dovecot.append(mailbox_user, "INBOX", make_message(True, rng))

        def classified() -> list[int]:
            with db.session() as s:
                return [r[0] for r in s.execute(text(
                    "SELECT spam_model_version_id FROM messages WHERE folder_id IS NOT NULL "
                    "AND classified_at IS NOT NULL"))]
        wait_for(lambda: len(classified()) == 2, 120, "the new mail classified", third.log)
        assert classified() == [promoted, promoted]
        assert (third_state / "models" / f"{promoted}-{sha[:12]}" / "version.json").exists()

        status_out = subprocess.run([sys.executable, "-m", "daemon.cli", "-c", str(third.config), "status"],
                                    cwd=REPO, capture_output=True, text=True, timeout=120)
        assert status_out.returncode == 0, status_out.stderr
        assert f"spam model: version {promoted} active" in status_out.stdout
        assert "token_refresh: " in status_out.stdout and "promoted 1" in status_out.stdout
    finally:
        assert third.terminate() == 0
