"""The two retraining jobs: a cheap token-statistics refresh and a full fine-tune, both gated.

Both learn from the base corpus plus the mailbox's labels, hold out the newest share of the
person's labels (by time; labels made from our own verdicts, ``labels.SELF_SOURCES``, always
train) for the promotion gate together with the fixed evaluation corpus, and end with
a new model version that is either promoted (active at once; running daemons switch to it
within ``spam.reload_seconds``) or kept as ``rejected`` with its figures. Each new version's
files are stored in Postgres (``daemon/spam/artifacts.py``) so every daemon can load it.

* :func:`refresh_token_statistics` keeps the active transformer (its files are hard-linked,
  not copied) and refits the token statistics, the combination weights and the thresholds
  (:func:`refresh_data`: the labels count ``correction_weight`` times in the token statistics,
  and a share of them chooses the thresholds with the base corpus's validation part). Minutes
  at most; runs often.
* :func:`fine_tune` trains a whole version with the training recipe (daemon/training/train.py);
  nightly, or early once enough new labels arrived.

Both skip, with the reason recorded in ``job_runs``, when there is nothing new to learn or too
few labels of a class. When one class outnumbers the other beyond ``max_class_ratio``, only the
newest of the larger class are trained on (:func:`dataset.balance_by_time`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from daemon.config import Settings
from daemon.config.learning_schedule import LearningSettings
from daemon.db.session import Database
from daemon.learning import dataset
from daemon.learning.dataset import Corpora, Label
from daemon.learning.gate import GateDecision, GateMargins, judge, split_by_time
from daemon.learning.jobs import RETRAIN_LOCK, JobResult, last_trained_label_id, run_job, skipped
from daemon.learning.labels import SELF_SOURCES
from daemon.spam import artifacts, registry
from daemon.spam.model import SpamModel, Thresholds
from daemon.spam.tables import ModelVersion
from daemon.spam.text import TextSettings
from daemon.spam.tokens import TokenSettings
from daemon.training.data import Example, split_validation
from daemon.training.recipe import TrainConfig, default_base_model
from daemon.training.train import TrainResult, finish_version, train_model

log = logging.getLogger(__name__)

TOKEN_REFRESH = "token_refresh"
FINE_TUNE = "fine_tune"


@dataclass
class Plan:
    """The data of one retrain, decided before any training starts."""

    train_labels: list[Label]
    held_out_labels: list[Label]
    base: list[Example]
    evaluation: list[Example]
    label_max_id: int
    labels_used: dict[str, Any]

    @property
    def held_out(self) -> list[Example]:
        return self.evaluation + [label.example for label in self.held_out_labels]


def refresh_token_statistics(settings: Settings, db: Database, corpora: Corpora | None = None,
                             instance: str | None = None, force: bool = False) -> JobResult:
    """Refit token statistics and thresholds on the active transformer; gate; promote or reject.

    ``force`` (``mailsense learn``, ``mailsense retrain tokens --force``) runs even without new
    labels and below ``min_per_class``: a person who just taught a few
    messages wants them learned now. The gate still decides.
    """
    corpora = corpora or Corpora(settings.learning)
    return run_job(db, TOKEN_REFRESH, RETRAIN_LOCK, lambda: _refresh(settings, db, corpora, force), instance)


def fine_tune(settings: Settings, db: Database, corpora: Corpora | None = None,
              instance: str | None = None, force: bool = False) -> JobResult:
    """Fine-tune a whole new version on base corpus + labels; gate; promote or reject (``force`` as above)."""
    corpora = corpora or Corpora(settings.learning)
    return run_job(db, FINE_TUNE, RETRAIN_LOCK, lambda: _fine_tune(settings, db, corpora, force), instance)


def _plan(settings: Settings, db: Database, job: str, corpora: Corpora, force: bool) -> Plan | JobResult:
    """The labels to train on and the held-out set, or a skip saying why there is nothing to do."""
    learning = settings.learning
    with db.session() as session:
        labels = dataset.load_labels(session)
    if not labels:
        return skipped(job, "no labels yet: corrections, review decisions and `mailsense learn` add them")
    label_max_id = max(label.id for label in labels)
    last = last_trained_label_id(db, job)
    if not force and last is not None and label_max_id <= last:
        return skipped(job, f"no new labels since the last {job.replace('_', ' ')} (newest label id {last})",
                       label_max_id)
    problem = dataset.balance_problem(labels, learning)
    if problem and not force:
        return skipped(job, problem, label_max_id)
    # Labels made from our own verdicts (Junk left alone) always train; only the person's judge the gate.
    split = split_by_time([label for label in labels if label.source not in SELF_SOURCES],
                          lambda label: (label.created_at, label.id), learning.held_out_fraction)
    own = [label for label in labels if label.source in SELF_SOURCES]
    train, left_out = dataset.balance_by_time(split.train + own, lambda label: label.label,
                                              lambda label: (label.created_at, label.id), learning.max_class_ratio)
    used = dataset.describe_labels(train, split.held_out) | corpora.describe()
    if left_out:
        used["left_out_for_balance"] = left_out
        _say(f"{left_out} older labels of the larger class left out ([learning] max_class_ratio "
             f"{learning.max_class_ratio:g})")
    return Plan(train, split.held_out, corpora.base(), corpora.evaluation(), label_max_id, used)


@dataclass(frozen=True)
class RefreshData:
    """What a token refresh fits on: token statistics on ``train``, weights and thresholds on ``calibration``."""

    train: list[Example]
    """Base-corpus training part plus the training share of the labels, each repeated ``correction_weight`` times."""
    calibration: list[Example]
    """Base-corpus validation part plus the calibration share of the labels (each once)."""


def refresh_data(base: list[Example], labelled: list[Example], val_fraction: float, seed: int,
                 correction_weight: int, calibration_fraction: float) -> RefreshData:
    """Split the base corpus and the mailbox's labels for a token refresh.

    The two are split separately, each stratified by class: a share ``calibration_fraction`` of
    the labels always joins the calibration part, however large the base corpus is. The spam
    threshold is chosen there for the target FPR, so it is set on this mailbox's ham as well as on
    the base corpus's; the rest of the labels train the token statistics, ``correction_weight``
    times each. The scheduler's job and the learning-loop benchmark (bench/learning_sim.py) both
    call this, so the benchmark measures the split the product uses.
    """
    base_train, base_val = split_validation(base, val_fraction, seed)
    label_train, label_cal = split_validation(labelled, calibration_fraction, seed)
    return RefreshData(train=base_train + label_train * correction_weight, calibration=base_val + label_cal)


def _refresh(settings: Settings, db: Database, corpora: Corpora, force: bool) -> JobResult:
    plan = _plan(settings, db, TOKEN_REFRESH, corpora, force)
    if isinstance(plan, JobResult):
        return plan
    with db.session() as session:
        active = registry.active_version(session)
        if active is None:
            return skipped(TOKEN_REFRESH, "no active model to refresh: run `mailsense setup` first", plan.label_max_id)
        live_id = active.id
        live_dir = registry.version_directory(session, active, artifacts.models_dir(settings))
    work = _work_dir(settings)
    try:
        result = refit_tokens(live_dir, work / "model", plan.base, [label.example for label in plan.train_labels],
                              settings.learning, {"refreshed_from": live_id})
        return _gate_and_register(settings, db, TOKEN_REFRESH, plan, result, live_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def refit_tokens(live_dir: Path, out: Path, base: list[Example], labelled: list[Example],
                 learning: LearningSettings, info: dict[str, Any] | None = None) -> TrainResult:
    """A token-refresh candidate in ``out`` (created): the live transformer, everything else refitted.

    The transformer's files are hard-linked from ``live_dir``; the token statistics, the
    combination weights and the thresholds are fitted on :func:`refresh_data`'s split of
    ``base`` and ``labelled``. The scheduled job and ``bench/support_unsure.py`` build their
    versions with this one function.
    """
    config = _config_of(live_dir, learning)
    text_settings = TextSettings.from_json(_read(live_dir / "text_settings.json")["transformer"])
    data = refresh_data(base, labelled, config.val_fraction, config.seed, learning.correction_weight,
                        learning.calibration_fraction)
    out.mkdir()
    shutil.copytree(live_dir / "transformer", out / "transformer", copy_function=_link_or_copy)
    base_model = config.base_model or default_base_model()
    _, metrics, thresholds = finish_version(
        out, data.train, data.calibration, config, text_settings, base_model,
        (info or {}) | {"transformer": "kept from the live version"}, _say)
    return TrainResult(path=out, metrics=metrics, thresholds=thresholds,
                       text_settings=_read(out / "text_settings.json"), base_model=str(base_model), seconds=0.0)


def _fine_tune(settings: Settings, db: Database, corpora: Corpora, force: bool) -> JobResult:
    plan = _plan(settings, db, FINE_TUNE, corpora, force)
    if isinstance(plan, JobResult):
        return plan
    with db.session() as session:
        active = registry.active_version(session)
        live_dir = registry.version_directory(session, active, artifacts.models_dir(settings)) if active else None
    config = _fine_tune_config(live_dir, settings.learning)
    work = _work_dir(settings)
    try:
        result = train_model(plan.base + [label.example for label in plan.train_labels], work / "model", config,
                             on_step=_say)
        return _gate_and_register(settings, db, FINE_TUNE, plan, result, live_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fine_tune_config(live_dir: Path | None, learning: LearningSettings) -> TrainConfig:
    """The live version's recipe (target FPR, token and sender settings...) with ``[learning]``'s size and epochs.

    Without a live version, the training recipe's defaults. A scheduled fine-tune never
    cross-fits (one fine-tune, not one per fold), and starts from the bundled base checkpoint when
    the one the live version named is not on this machine.
    """
    config = _config_of(live_dir, learning) if live_dir is not None else TrainConfig(
        threads=learning.threads or None, progress=False)
    config.epochs = learning.fine_tune_epochs
    config.max_length = learning.fine_tune_max_length
    config.transformer_max_train = learning.fine_tune_max_messages or None
    config.text_settings = None
    config.cv_folds = 0
    if config.base_model is not None and not Path(config.base_model).exists():
        config.base_model = None
    return config


def scored(directory: Path, held_out: list[Example], threads: int | None) -> tuple[list[float], Thresholds]:
    """The scores of the version in ``directory`` on ``held_out``, and its thresholds."""
    model = SpamModel.load(directory, threads=threads)
    scores = [float(s) for s in model.scores([e.message for e in held_out])] if held_out else []
    return scores, model.thresholds


def _gate_and_register(settings: Settings, db: Database, job: str, plan: Plan, result: TrainResult,
                       live_dir: Path | None) -> JobResult:
    learning = settings.learning
    threads = learning.threads or None
    held_out = plan.held_out
    candidate_scores, thresholds = scored(result.path, held_out, threads)
    live_scores, live_thresholds = scored(live_dir, held_out, threads) if live_dir is not None else (None, None)
    judgement = judge([e.label for e in held_out], candidate_scores, thresholds.spam, live_scores,
                      live_thresholds.spam if live_thresholds else None, thresholds.target_fpr,
                      GateMargins(fpr=learning.gate_fpr_margin, recall=learning.gate_recall_margin))
    decision, candidate, live = judgement.decision, judgement.candidate, judgement.live
    gate = {"decision": decision.to_json(), "candidate": candidate.to_json(),
            "live": live.to_json() if live else None,
            "held_out": {"n": len(held_out), "evaluation_corpus": len(plan.evaluation),
                         "labels": len(plan.held_out_labels)},
            "margins": {"fpr": learning.gate_fpr_margin, "recall": learning.gate_recall_margin}, "job": job}
    version_id = _register(settings, db, result, gate, plan.labels_used, decision)
    return JobResult(job, "promoted" if decision.promote else "rejected", f"version {version_id}: {decision.reason}",
                     version_id=version_id, decision=decision, label_max_id=plan.label_max_id,
                     data={"labels": plan.labels_used["train"]["n"], "held_out": len(held_out)})


def _register(settings: Settings, db: Database, result: TrainResult, gate: dict[str, Any],
              labels_used: dict[str, Any], decision: GateDecision) -> int:
    """Record the candidate, store its files in Postgres, move them to ``models/<id>-<sha>``, promote or reject."""
    with db.session() as session, session.begin():
        version_id = registry.register(session, result)
        checksum = artifacts.store_version(session, version_id, result.path)
        row = session.get(ModelVersion, version_id)
        assert row is not None
        final = artifacts.cache_path(artifacts.models_dir(settings), row)
        if not (final / "version.json").exists():
            os.replace(result.path, final)
        row.path = str(final.resolve())
        row.gate = gate
        row.labels_used = labels_used
        if decision.promote:
            registry.activate_version(session, version_id)
        else:
            registry.reject_version(session, version_id)
    log.info("model version %d (%s): %s", version_id, checksum[:12], decision.reason)
    return version_id


def _config_of(directory: Path, learning: LearningSettings) -> TrainConfig:
    """The recipe the live version was made with (token settings, target FPR...), threads from ``[learning]``."""
    info = _read(directory / "version.json")
    stored = dict(info.get("config") or {})
    known = {f.name for f in fields(TrainConfig)} - {"token_settings", "text_settings", "base_model"}
    config = TrainConfig(**{k: v for k, v in stored.items() if k in known})
    if stored.get("base_model"):
        config.base_model = Path(stored["base_model"])
    if "token_settings" in info:
        config.token_settings = TokenSettings.from_json(info["token_settings"])
    config.threads = learning.threads or None
    config.progress = False
    return config


def _work_dir(settings: Settings) -> Path:
    root = artifacts.models_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".work-", dir=root))


def _link_or_copy(src: str, dst: str) -> str:
    """Hard-link a transformer file (same bytes, no extra disk) or copy it across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _say(message: str) -> None:
    log.info("retrain: %s", message)
