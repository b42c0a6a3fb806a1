"""Housekeeping on a real Postgres: old version files go, rollback targets and labelled raw mail stay."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.learning.housekeeping import housekeeping
from daemon.spam.artifacts import store_version
from tests.learning.labelled import add_labelled


def fake_version(db: Database, root: Path, name: str, status: str, age_days: int, shared: bytes) -> int:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "own.bin").write_bytes(name.encode())
    (directory / "shared.bin").write_bytes(shared)
    with db.session() as s, s.begin():
        version_id = s.execute(text(
            "INSERT INTO model_versions (kind, path, status, active, created_at, activated_at) VALUES "
            "('spam', :p, :s, :a, now() - make_interval(days => :d), now() - make_interval(days => :d)) RETURNING id"),
            {"p": str(directory), "s": status, "a": status == "active", "d": age_days}).scalar_one()
        store_version(s, version_id, directory)
    return int(version_id)


def test_housekeeping_removes_old_version_files_but_keeps_rollback_targets_and_shared_blobs(
        db: Database, tmp_path: Path) -> None:
    settings = Settings.model_validate({"daemon": {"state_dir": str(tmp_path)},
                                        "learning": {"raw_retention_days": 10}})
    models = tmp_path / "models"
    shared = b"transformer weights"
    old_rejected = fake_version(db, models, "rejected-old", "rejected", 60, shared)
    new_rejected = fake_version(db, models, "rejected-new", "rejected", 1, shared)
    retired = [fake_version(db, models, f"retired-{i}", "retired", 60 + i, shared) for i in range(4)]
    active = fake_version(db, models, "active", "active", 90, shared)
    # Raw mail: an old unlabelled finished message loses its bytes; an old labelled one keeps them.
    with db.session() as s, s.begin():
        s.execute(text("INSERT INTO accounts (name) VALUES ('test')"))
        account = s.execute(text("SELECT id FROM accounts")).scalar_one()
        s.execute(text("INSERT INTO messages (account_id, source, content_sha256, raw, size, stage, received_at) "
                       "VALUES (:a, 'import', 'x', 'raw bytes', 9, 'done', now() - interval '40 days')"),
                  {"a": account})
    [(labelled_id, _)] = add_labelled(db, 1, seed=1)
    with db.session() as s, s.begin():
        s.execute(text("UPDATE messages SET received_at = now() - interval '40 days'"))

    result = housekeeping(settings, db)
    assert result.outcome == "ok", result.detail
    # the oldest retired version is beyond the 3 kept for rollback; the older rejected one goes
    gone = {old_rejected, retired[3]}
    assert set(result.data["versions"]) == gone
    assert not (models / "rejected-old").exists() and not (models / "retired-3").exists()
    for name in ["rejected-new", "retired-0", "retired-1", "retired-2", "active"]:
        assert (models / name / "shared.bin").exists()
    with db.session() as s:
        stored = dict(s.execute(text("SELECT id, sha256 IS NOT NULL FROM model_versions")).all())
        assert stored == {v: v not in gone for v in [old_rejected, new_rejected, *retired, active]}
        # the shared file is still used by the kept versions; the removed ones' own files are freed
        assert s.execute(text("SELECT count(*) FROM model_blobs")).scalar_one() == 1 + 5
        raw = dict(s.execute(text("SELECT id, octet_length(raw) FROM messages")).all())
    assert raw[labelled_id] > 0 and sorted(raw.values())[0] == 0
