"""The tiny fine-tune: 1 epoch on 48 generated messages must separate obvious spam from ham."""

from __future__ import annotations

import argparse
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest

from daemon.spam.model import SpamModel, Thresholds
from daemon.training import evaluation as metrics
from daemon.training.data import split_validation
from tests.training.samples import make_examples, make_message, tiny_model_training_set


def test_version_directory_has_everything(tiny_model: Path) -> None:
    for name in ("transformer/config.json", "transformer/model.safetensors", "transformer/tokenizer.json",
                 "transformer/model.onnx", "transformer/model.int8.onnx", "tokens.npz", "tokens.json", "senders.json",
                 "text_settings.json", "ensemble.json",
                 "thresholds.json", "metrics.json", "version.json"):
        assert (tiny_model / name).exists(), name
    thresholds = json.loads((tiny_model / "thresholds.json").read_text())
    assert 0.5 <= thresholds["spam"] < 1 and thresholds["unsure"] <= thresholds["spam"]
    assert not list(tiny_model.parent.glob("mailsense-train-*")), "checkpoints must be cleaned up"


def test_tiny_model_separates_unseen_obvious_spam_from_ham(tiny_model: Path) -> None:
    model = SpamModel.load(tiny_model)
    held_out = make_examples(20, seed=99)
    labels = [e.label for e in held_out]
    t_logits, _ = model.component_logits([e.message for e in held_out])
    # The fine-tuned transformer on its own ranks spam above ham, not only the token statistics.
    assert metrics.roc_auc(labels, t_logits.tolist()) >= 0.9
    verdicts = model.classify([e.message for e in held_out], batch_size=4)
    assert len(verdicts) == 20
    assert all(v.verdict in ("ham", "unsure", "spam") and 0.0 <= v.score <= 1.0 for v in verdicts)
    ham_scores = [v.score for v, e in zip(verdicts, held_out, strict=True) if e.label == 0]
    spam_scores = [v.score for v, e in zip(verdicts, held_out, strict=True) if e.label == 1]
    assert max(ham_scores) < min(spam_scores)
    assert all(v.verdict == "ham" for v, e in zip(verdicts, held_out, strict=True) if e.label == 0)


def test_fp32_and_int8_paths_agree(tiny_model: Path) -> None:
    held_out = [e.message for e in make_examples(10, seed=5)]
    int8 = SpamModel.load(tiny_model, quantize=True).scores(held_out)
    fp32 = SpamModel.load(tiny_model, quantize=False).scores(held_out)
    assert np.corrcoef(int8, fp32)[0, 1] > 0.95
    assert ((int8 >= 0.5) == (fp32 >= 0.5)).all()


def test_onnx_runtime_gives_the_pytorch_scores(tiny_model: Path) -> None:
    held_out = [e.message for e in make_examples(12, seed=7)]
    onnx = SpamModel.load(tiny_model, runtime="onnx")
    torch_fp32 = SpamModel.load(tiny_model, runtime="torch")
    assert onnx.transformer.path_name == "onnx" and torch_fp32.transformer.path_name == "torch-fp32"
    onnx_logits, _ = onnx.component_logits(held_out)
    torch_logits, _ = torch_fp32.component_logits(held_out)
    assert np.allclose(onnx_logits, torch_logits, atol=1e-3)


def test_int8_screen_keeps_the_fp32_verdicts(tiny_model: Path) -> None:
    messages = [e.message for e in make_examples(16, seed=8)]
    screened = SpamModel.load(tiny_model)
    fp32 = SpamModel.load(tiny_model, runtime="onnx")
    assert screened.transformer.path_name == "onnx+int8-screen" and screened.screen_margin is not None
    # The margin is twice the largest int8-vs-fp32 logit difference on the version's validation split,
    # plus 0.5 (daemon/training/train.py); recomputed here from that split.
    config = json.loads((tiny_model / "version.json").read_text())["config"]
    _, val = split_validation(tiny_model_training_set(), config["val_fraction"], config["seed"])
    val_texts, _ = screened.texts([e.message for e in val])
    val_diff = np.abs(screened.transformer.screen_logits(val_texts) - screened.transformer.logits(val_texts))
    assert screened.screen_margin == pytest.approx(2 * val_diff.max() + 0.5, abs=1e-3)
    # What the screen relies on: int8 strays less than the margin on messages it has not seen either.
    texts, _ = screened.texts(messages)
    unseen_diff = np.abs(screened.transformer.screen_logits(texts) - screened.transformer.logits(texts))
    assert unseen_diff.max() < screened.screen_margin
    assert [v.verdict for v in screened.classify(messages)] == [v.verdict for v in fp32.classify(messages)]
    assert np.allclose(screened.scores(messages), fp32.scores(messages), atol=0.05)
    # Put both thresholds where every message is a close call: all of them get an fp32 second look.
    z = np.log(fp32.scores(messages) / (1 - fp32.scores(messages)))
    middle = float(1 / (1 + np.exp(-np.median(z))))
    screened.thresholds = Thresholds(spam=middle, unsure=middle)
    screened.screen_margin = float(np.abs(z).max() * 2 / abs(screened.ensemble.transformer) + 1)
    assert np.allclose(screened.scores(messages), fp32.scores(messages), atol=1e-4)
    assert screened.last_rescored == len(messages)


def test_a_version_without_onnx_runs_on_pytorch(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "no-onnx"
    shutil.copytree(tiny_model, copy)
    (copy / "transformer" / "model.onnx").unlink()
    assert SpamModel.load(copy).transformer.path_name == "torch-fp32"
    with pytest.raises(FileNotFoundError, match=r"model\.onnx"):
        SpamModel.load(copy, runtime="onnx")


def test_batching_does_not_change_scores(tiny_model: Path) -> None:
    model = SpamModel.load(tiny_model)
    messages = [e.message for e in make_examples(9, seed=6)]
    one = model.scores(messages, batch_size=1)
    many = model.scores(messages, batch_size=16)
    assert np.allclose(one, many, atol=1e-4)
    assert model.classify([]) == []


def test_thresholds_verdict_bands() -> None:
    t = Thresholds(spam=0.9, unsure=0.6)
    assert [t.verdict(s) for s in (0.1, 0.6, 0.89, 0.9, 1.0)] == ["ham", "unsure", "unsure", "spam", "spam"]
    assert Thresholds.from_json(t.to_json()) == t


def test_classify_and_eval_commands(tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from daemon.config import Settings
    from daemon.training.cli import cmd_classify, cmd_eval_spam

    settings = Settings()
    rng = random.Random(11)
    ham, spam = tmp_path / "ham.eml", tmp_path / "spam.eml"
    ham.write_bytes(make_message(False, rng))
    spam.write_bytes(make_message(True, rng))

    args = argparse.Namespace(model=str(tiny_model), files=[str(ham)])
    assert cmd_classify(args, settings) == 0
    args.files = [str(ham), str(spam)]
    assert cmd_classify(args, settings) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith(f"{ham}\tham\t") and out[-1].startswith(f"{spam}\tspam\t")
    args.files = [str(tmp_path / "missing.eml")]
    assert cmd_classify(args, settings) == 2

    corpus = tmp_path / "corpus"
    for sub in ("ham", "spam"):
        (corpus / sub).mkdir(parents=True)
        for i in range(4):
            (corpus / sub / f"{i}.eml").write_bytes(make_message(sub == "spam", rng))

    eval_args = argparse.Namespace(model=str(tiny_model), data=str(corpus), split="test", threshold=None)
    assert cmd_eval_spam(eval_args, settings) == 0
    report = capsys.readouterr().out
    for needle in ("FPR", "FNR", "precision", "recall", "F1", "ROC AUC", "FPR 0.1 %", "confusion matrix"):
        assert needle in report


def test_register_activate_and_load_active(tiny_model: Path, db) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.exc import IntegrityError

    from daemon.spam import registry
    from daemon.spam.tables import ModelVersion
    from daemon.training.starter import _result_from_dir

    result = _result_from_dir(tiny_model)
    with db.session() as s, s.begin():
        assert registry.load_active(s) is None
        first = registry.register(s, result, activate=True)
        second = registry.register(s, result, activate=False)
    with db.session() as s, s.begin():
        assert registry.active_version(s).id == first
        registry.activate_version(s, second)
    with db.session() as s:
        version_id, model = registry.load_active(s)
        assert version_id == second and isinstance(model, SpamModel)
        assert s.get(ModelVersion, first).active is False
    # The partial unique index refuses a second active spam version.
    with pytest.raises(IntegrityError), db.session() as s, s.begin():
        s.get(ModelVersion, first).active = True


@pytest.mark.training
def test_starter_model_is_trained_once_and_activated(tmp_path: Path, db, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from daemon.config import Settings
    from daemon.training import starter
    from daemon.training.train import TrainConfig

    corpus = tmp_path / "corpus"
    rng = random.Random(12)
    rows = ["path\tlabel\tsplit"]
    for i in range(40):
        spam = i % 2 == 1
        (corpus / "c").mkdir(parents=True, exist_ok=True)
        (corpus / "c" / f"{i}.eml").write_bytes(make_message(spam, rng))
        rows.append(f"c/{i}.eml\t{'spam' if spam else 'ham'}\ttrain")
    (corpus / "manifest.tsv").write_text("\n".join(rows) + "\n")
    archive = tmp_path / "corpus.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(corpus, arcname="corpus")
    monkeypatch.setattr(starter, "CORPUS", archive)
    # The shipped starter learns no sender reputation (the corpus owner's correspondents are not ours).
    assert starter.starter_config().sender_reputation is False
    monkeypatch.setattr(starter, "starter_config", lambda: TrainConfig(
        epochs=1, max_length=32, batch_size=8, val_fraction=0.25, progress=False, sender_reputation=False))
    settings = Settings.model_validate({"daemon": {"state_dir": str(tmp_path / "state")}})

    version_id = starter.ensure_starter_model(settings, db)
    version_dir = tmp_path / "state/models/starter-v1"
    assert (version_dir / "version.json").exists() and not (version_dir / "senders.json").exists()
    loaded = SpamModel.load(version_dir)
    assert loaded.senders is None and loaded.ensemble.senders == ()
    assert len(loaded.classify([e.message for e in make_examples(4, seed=8)])) == 4
    assert starter.ensure_starter_model(settings, db) == version_id  # cached, not retrained
    from daemon.spam import registry

    with db.session() as s:
        assert registry.active_version(s).id == version_id


@pytest.mark.training
def test_cross_fitted_version_takes_thresholds_from_out_of_fold_scores(tmp_path: Path) -> None:
    from daemon.training.crossfit import best_epoch
    from daemon.training.train import TrainConfig, train_model

    examples = make_examples(32, seed=3)
    result = train_model(examples, tmp_path / "cv", TrainConfig(
        epochs=1, max_length=48, batch_size=8, learning_rate=2e-4, val_fraction=0.25, progress=False,
        cv_folds=2, cv_jobs=2, threads=1))
    cross = result.metrics["validation_parts"]["cross_fit"]
    # Every one of the 32 messages was scored by a fold model that had not seen it.
    out_of_fold = cross["out_of_fold"]
    assert cross["folds"] == 2 and out_of_fold["n_ham"] + out_of_fold["n_spam"] == 32
    assert out_of_fold["threshold"] == result.thresholds.spam
    assert out_of_fold["auc"] >= 0.9
    model = SpamModel.load(result.path)
    with np.load(result.path / "out_of_fold.npz") as saved:
        assert saved["transformer"].shape == (32,) and saved["senders"].shape == (32, 2)
        # The fold transformers and the saved one score the validation messages alike (the premise of
        # taking the thresholds from the folds); the correlation in metrics.json, recomputed here.
        _, val = split_validation(examples, 0.25, TrainConfig().seed)
        position = {e.name: i for i, e in enumerate(examples)}
        folds_logits = saved["transformer"][[position[e.name] for e in val]]
    version_logits, _ = model.component_logits([e.message for e in val])
    correlation = float(np.corrcoef(version_logits, folds_logits)[0, 1])
    assert cross["validation_transformer_logits"]["correlation"] == pytest.approx(correlation, abs=1e-3)
    assert correlation > 0.8
    held_out = make_examples(12, seed=77)
    verdicts = model.classify([e.message for e in held_out])
    assert [v.verdict == "spam" for v in verdicts] == [e.label == 1 for e in held_out]
    assert best_epoch([{"epoch": 1.0, "eval_loss": 0.3}, {"epoch": 2.0, "eval_loss": 0.2},
                       {"epoch": 3.0, "eval_loss": 0.25}], 3.0) == 2.0
    assert best_epoch([], 3.0) == 3.0
