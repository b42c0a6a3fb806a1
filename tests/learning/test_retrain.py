"""The retraining jobs on a real Postgres with a tiny model: gated, promoted or rejected, recorded, stored."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.learning.retrain import fine_tune, refresh_token_statistics
from daemon.spam import registry
from daemon.spam.model import SpamModel
from daemon.spam.tables import ModelArtifact, ModelVersion
from tests.learning.labelled import START, activate, add_labelled, label, write_corpus


def settings_for(tmp_path: Path, **learning: object) -> Settings:
    return Settings.model_validate({
        "daemon": {"state_dir": str(tmp_path / "state")},
        "learning": {"min_per_class": 8, "base_corpus": "none", "eval_corpus": str(write_corpus(tmp_path / "eval",
                     12, seed=77)), "threads": 1, "held_out_fraction": 0.25, **learning},
    })


def runs(db: Database) -> list[tuple[str, str, str]]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(text("SELECT job, outcome, detail FROM job_runs ORDER BY id"))]


def test_token_refresh_is_gated_promoted_stored_and_skips_without_new_labels(
        tiny_model: Path, db: Database, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    live = activate(db, tiny_model)
    assert refresh_token_statistics(settings, db).outcome == "skipped"  # no labels yet
    add_labelled(db, 6, seed=3)
    result = refresh_token_statistics(settings, db)
    assert result.outcome == "skipped" and "too few labels: 3 spam, 3 ham" in result.detail

    add_labelled(db, 30, seed=4, minutes_from=10)
    result = refresh_token_statistics(settings, db, instance="test-instance")
    assert result.outcome == "promoted", result.detail
    assert result.decision is not None and result.decision.fpr_candidate <= (result.decision.fpr_live or 0)
    with db.session() as s:
        new = s.get(ModelVersion, result.version_id)
        old = s.get(ModelVersion, live)
        assert (new.status, new.active, old.status, old.active) == ("active", True, "retired", False)
        assert new.gate["decision"]["promote"] is True and new.gate["held_out"]["evaluation_corpus"] == 12
        assert new.gate["held_out"]["labels"] == 9  # newest quarter of 36
        assert new.labels_used["train"]["n"] == 27 and new.labels_used["train"]["by_source"]["user_move"]
        assert new.sha256 and Path(new.path).name == f"{new.id}-{new.sha256[:12]}"
        # the transformer is shared with the live version, not copied
        assert (Path(new.path) / "transformer/config.json").stat().st_ino == (
            tiny_model / "transformer/config.json").stat().st_ino
        stored = s.scalars(select(ModelArtifact.path).where(ModelArtifact.version_id == new.id)).all()
        assert "tokens.npz" in stored and "transformer/config.json" in stored
        row = s.execute(text("SELECT outcome, instance, version_id, finished_at IS NOT NULL FROM job_runs "
                             "ORDER BY id DESC LIMIT 1")).one()
        assert tuple(row) == ("promoted", "test-instance", new.id, True)

    again = refresh_token_statistics(settings, db)
    assert again.outcome == "skipped" and "no new labels" in again.detail
    assert [r[1] for r in runs(db)] == ["skipped", "skipped", "promoted", "skipped"]
    forced = refresh_token_statistics(settings, db, force=True)  # `mailsense learn`: now, gate still decides
    assert forced.outcome in ("promoted", "rejected"), forced.detail


def test_a_candidate_trained_on_flipped_labels_is_rejected_and_kept_with_its_metrics(
        tiny_model: Path, db: Database, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    live = activate(db, tiny_model)
    labelled = add_labelled(db, 40, seed=5)
    # The older 80 % are relabelled wrongly (as at their own time); the newest, held out, stay right.
    with db.session() as s, s.begin():
        for i, (message_id, y) in enumerate(labelled[:32]):
            label(s, message_id, not y, "user_move", START + timedelta(minutes=i, seconds=30))
    result = refresh_token_statistics(settings, db)
    assert result.outcome == "rejected", result.detail
    assert result.decision is not None and not result.decision.promote
    with db.session() as s:
        rejected = s.get(ModelVersion, result.version_id)
        assert (rejected.status, rejected.active) == ("rejected", False)
        assert rejected.gate["candidate"]["fpr"] > rejected.gate["live"]["fpr"] or (
            rejected.gate["candidate"]["recall"] < rejected.gate["live"]["recall"])
        assert registry.active_version(s).id == live


def test_a_daemon_without_the_directory_loads_the_active_version_from_postgres(
        tiny_model: Path, db: Database, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    activate(db, tiny_model)
    add_labelled(db, 24, seed=6)
    result = refresh_token_statistics(settings, db)
    assert result.outcome == "promoted", result.detail
    with db.session() as s:
        path = Path(s.get(ModelVersion, result.version_id).path)
    shutil.rmtree(path)  # another host: the trainer's directory is not here
    cache = tmp_path / "other-host" / "models"
    with db.session() as s:
        loaded = registry.load_active(s, cache)
    assert loaded is not None and loaded[0] == result.version_id and isinstance(loaded[1], SpamModel)
    assert loaded[1].directory.parent == cache
    # A corrupted stored file is refused, and nothing half-written is left behind.
    shutil.rmtree(cache)
    with db.session() as s, s.begin():
        s.execute(text("UPDATE model_blob_chunks SET data = 'x' WHERE sha256 = (SELECT sha256 FROM model_artifacts "
                       "WHERE version_id = :v AND path = 'thresholds.json')"), {"v": result.version_id})
    with db.session() as s:
        try:
            registry.load_active(s, cache)
            raise AssertionError("a corrupted artifact was loaded")
        except Exception as exc:
            assert "checksum" in str(exc)
    assert not any(p.name.endswith(f"{result.version_id}-") for p in cache.iterdir())
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")]


def test_fine_tune_on_a_tiny_configuration_is_gated(tiny_model: Path, db: Database, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, fine_tune_epochs=1, fine_tune_max_length=32)
    activate(db, tiny_model)
    add_labelled(db, 40, seed=8)
    result = fine_tune(settings, db)
    assert result.outcome in ("promoted", "rejected"), result.detail
    with db.session() as s:
        version = s.get(ModelVersion, result.version_id)
        assert version.status == ("active" if result.outcome == "promoted" else "rejected")
        assert version.gate["decision"]["promote"] is (result.outcome == "promoted")
        assert version.metrics["training"]["epochs_run"] == 1
        recipe = json.loads((Path(version.path) / "version.json").read_text())["config"]
    # the live version's recipe (the tiny model's learning rate and validation share), [learning]'s size
    assert (recipe["learning_rate"], recipe["val_fraction"], recipe["batch_size"]) == (2e-4, 0.25, 8)
    assert (recipe["max_length"], recipe["epochs"], recipe["cv_folds"]) == (32, 1, 0)
    assert fine_tune(settings, db).outcome == "skipped"


def test_many_more_ham_labels_than_spam_train_on_the_newest_ham_instead_of_skipping(
        tiny_model: Path, db: Database, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, max_class_ratio=1.5, min_per_class=4)
    activate(db, tiny_model)
    labelled = add_labelled(db, 40, seed=8)
    # A person who answers much of their mail: most labels are implicit ham, few are spam.
    with db.session() as s, s.begin():
        for i, (message_id, y) in enumerate(labelled[:16]):
            if y:
                label(s, message_id, False, "replied_thread", START + timedelta(minutes=i, seconds=30))
    result = refresh_token_statistics(settings, db)
    assert result.outcome in ("promoted", "rejected"), result.detail
    with db.session() as s:
        used = s.get(ModelVersion, result.version_id).labels_used
    train = used["train"]
    assert train["spam"] >= 4 and train["ham"] == int(1.5 * train["spam"])
    assert used["left_out_for_balance"] == 30 - train["n"]  # 40 labels, the newest quarter held out


def test_labels_from_junk_left_alone_train_but_never_judge_the_gate(
        tiny_model: Path, db: Database, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    activate(db, tiny_model)
    add_labelled(db, 24, seed=9)
    later = add_labelled(db, 20, seed=10, minutes_from=100)
    with db.session() as s, s.begin():  # the newest labels of all: spam the filing left in Junk
        for i, (message_id, y) in enumerate(later):
            if y:
                label(s, message_id, True, "left_in_junk", START + timedelta(minutes=200 + i))
    result = refresh_token_statistics(settings, db)
    assert result.outcome in ("promoted", "rejected"), result.detail
    with db.session() as s:
        version = s.get(ModelVersion, result.version_id)
        used, gate = version.labels_used, version.gate
    assert "left_in_junk" not in used["held_out"]["by_source"]
    assert used["train"]["by_source"]["left_in_junk"] == {"spam": 10, "ham": 0}
    assert gate["held_out"]["labels"] == 8  # a quarter of the person's 34 labels, none of the 10 self-made
    assert used["train"]["n"] == 26 + 10
