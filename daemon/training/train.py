"""Train a spam model version: fine-tune the transformer, fit token statistics, calibrate.

Steps, all seeded:

1. hold out a stratified validation split (15 % by default) of the labelled data;
2. fine-tune ``BertForSequenceClassification`` from a base checkpoint *path* with the HF
   ``Trainer``: class-weighted loss (ham outnumbers spam about 2:1 in typical data), evaluation
   every epoch, early stopping on validation loss, the best epoch kept;
3. fit the token-statistics model (``daemon/spam/tokens.py``) and count sender reputation
   (``daemon/spam/senders.py``) on the same training part;
4. on the validation split, score every part with the inference path the daemon will use, fit
   the combination weights, and choose the spam threshold for the target false-positive
   rate plus a lower "unsure" threshold;
5. write the model version directory; ``daemon.spam.registry.register`` records it in
   ``model_versions``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daemon.cpu import available_cores
from daemon.spam.model import (
    Ensemble,
    SpamModel,
    Thresholds,
    sigmoid,
    write_json,
)
from daemon.spam.senders import SenderReputation
from daemon.spam.text import TextSettings, build_text
from daemon.spam.tokens import TOKEN_TEXT_SETTINGS, TokenModel
from daemon.spam.transformer import export_onnx
from daemon.training import evaluation as metrics
from daemon.training.crossfit import OutOfFold, best_epoch, cross_fit
from daemon.training.data import Example, split_validation
from daemon.training.recipe import TrainConfig, default_base_model, fine_tune, seed_everything

__all__ = ["TrainConfig", "TrainResult", "default_base_model", "train_model"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    path: Path
    metrics: dict[str, Any]
    thresholds: Thresholds
    text_settings: dict[str, Any]
    base_model: str
    seconds: float



def export_transformer(directory: Path, say: Callable[[str], None]) -> None:
    """Export ONNX for the daemon's default runtime; a version without it still runs on PyTorch."""
    try:
        export_onnx(directory)
    except Exception as exc:  # e.g. the onnx package missing: slower, not broken
        say(f"ONNX export failed ({type(exc).__name__}: {exc}); this version will run on PyTorch")


def fit_ensemble(t_logits: np.ndarray, k_logits: np.ndarray, labels: list[int],
                 sender_features: np.ndarray | None = None) -> Ensemble:
    """The combination weights and a bias by logistic regression on the validation split.

    Strong regularisation (C=1) on standardised inputs: a few hundred validation messages
    must not pick extreme weights that only fit their own quirks.
    """
    from sklearn.linear_model import LogisticRegression

    columns = [t_logits, k_logits]
    if sender_features is not None:
        columns.extend(sender_features.T)
    x = np.column_stack(columns).astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
    clf.fit((x - mean) / std, np.asarray(labels))
    w = clf.coef_.ravel() / std
    b = float(clf.intercept_[0] - np.sum(clf.coef_.ravel() * mean / std))
    return Ensemble(transformer=float(w[0]), tokens=float(w[1]), bias=b,
                    senders=tuple(float(v) for v in w[2:]))


def choose_thresholds(labels: list[int], scores: np.ndarray, target_fpr: float, unsure_fpr: float) -> Thresholds:
    spam = metrics.threshold_at_fpr(labels, scores.tolist(), target_fpr)
    unsure = metrics.threshold_at_fpr(labels, scores.tolist(), unsure_fpr)
    spam = min(max(spam, 0.5), 0.999999)  # never call spam what the model itself calls more likely ham
    return Thresholds(spam=float(spam), unsure=float(min(unsure, spam)), target_fpr=target_fpr)


def train_model(examples: list[Example], out_dir: str | Path, config: TrainConfig | None = None,
                on_step: Callable[[str], None] | None = None) -> TrainResult:
    """Train a complete model version into ``out_dir`` (must not exist yet)."""
    config = config or TrainConfig()
    say = on_step or (lambda msg: log.info("%s", msg))
    started = time.monotonic()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out directory")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(config.threads or available_cores())
    seed_everything(config.seed)

    train, val = split_validation(examples, config.val_fraction, config.seed)
    n_spam = sum(e.label for e in train)
    if n_spam == 0 or n_spam == len(train) or not any(e.label for e in val) or all(e.label for e in val):
        raise ValueError("training needs ham and spam in both the training and the validation part")
    say(f"training on {len(train)} messages ({n_spam} spam), validating on {len(val)}")

    text_settings = config.text_settings or TextSettings.for_max_length(config.max_length)
    base = config.base_model or default_base_model()
    say(f"fine-tuning {base.name} for up to {config.epochs:g} epochs at {config.max_length} tokens")
    ft_train = train
    if config.transformer_max_train and len(train) > config.transformer_max_train:
        ft_train, _ = split_validation(train, 1 - config.transformer_max_train / len(train), config.seed)
        say(f"fine-tuning on a stratified sample of {len(ft_train)} messages")
    ft = fine_tune(ft_train, val, out / "transformer", config, text_settings)
    export_transformer(out / "transformer", say)
    out_of_fold = None
    if config.cv_folds > 1:
        epochs = best_epoch(ft["history"], config.epochs)
        out_of_fold = cross_fit(examples, config, text_settings, epochs, say)

    val_report, result_metrics, thresholds = finish_version(out, train, val, config, text_settings, base, ft, say,
                                                            out_of_fold)
    seconds = time.monotonic() - started
    say(f"done in {seconds / 60:.1f} min: validation FPR {val_report['fpr']:.4f}, F1 {val_report['f1']:.4f}")
    return TrainResult(path=out, metrics=result_metrics, thresholds=thresholds,
                       text_settings={"transformer": text_settings.to_json(), "tokens": TOKEN_TEXT_SETTINGS.to_json()},
                       base_model=str(base), seconds=seconds)


def finish_version(out: Path, train: list[Example], val: list[Example], config: TrainConfig,
                   text_settings: TextSettings, base: Path, fine_tune_metrics: dict[str, Any],
                   say: Callable[[str], None], out_of_fold: OutOfFold | None = None,
                   ) -> tuple[dict[str, Any], dict[str, Any], Thresholds]:
    """Fit the token statistics, then the ensemble and thresholds on the validation split.

    With ``out_of_fold`` (cross-fitting), the ensemble and thresholds are fitted on those scores
    instead, and the validation split only reports how the saved version does under them.

    Separate from the fine-tune so the cheap parts can be refitted on an existing transformer.
    """
    say("fitting token statistics")
    tokens = TokenModel.fit([build_text(e.message, TOKEN_TEXT_SETTINGS) for e in train],
                            [e.label for e in train], config.token_settings)
    tokens.save(out)
    if config.sender_reputation:
        SenderReputation.fit((e.message for e in train), (e.label for e in train),
                              config.sender_ham_side).save(out)
    write_json(out / "text_settings.json",
               {"transformer": text_settings.to_json(), "tokens": TOKEN_TEXT_SETTINGS.to_json()})
    info = {
        "kind": "spam", "format": 1, "base_model": str(base), "max_length": config.max_length,
        "quantized": config.quantize, "created_at": datetime.now(UTC).isoformat(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()
                   if k not in ("token_settings", "text_settings")},
        "token_settings": config.token_settings.to_json(),
        "n_train": len(train), "n_val": len(val),
    }
    write_json(out / "version.json", info)
    # Placeholders so SpamModel.load works before calibration replaces them.
    write_json(out / "ensemble.json", {"transformer": 1.0, "tokens": 0.0, "bias": 0.0})
    write_json(out / "thresholds.json", {"spam": 0.5, "unsure": 0.5, "target_fpr": config.target_fpr})

    say("calibrating on the validation split")
    model = SpamModel.load(out, quantize=config.quantize, threads=config.threads)
    val_labels = [e.label for e in val]
    t_texts, k_texts = model.texts([e.message for e in val])
    t_logits, k_logits = model.transformer.logits(t_texts), model.tokens.logits(k_texts)
    s_features = model.sender_features([e.message for e in val])
    # The weights and thresholds are fitted on the validation rows, or on the out-of-fold rows when cross-fitting.
    oof = out_of_fold
    fit_t, fit_k, fit_s, fit_labels = (t_logits, k_logits, s_features, val_labels) if oof is None else (
        oof.transformer, oof.tokens, oof.senders, oof.labels)
    ensemble = fit_ensemble(fit_t, fit_k, fit_labels, fit_s)
    fit_scores = sigmoid(ensemble.logit(fit_t, fit_k, fit_s))
    thresholds = choose_thresholds(fit_labels, fit_scores, config.target_fpr, config.unsure_fpr)
    scores = sigmoid(ensemble.logit(t_logits, k_logits, s_features))
    cross_fitted: dict[str, Any] = {}
    if oof is not None:
        # Kept so the weights and thresholds can be re-derived and audited without new fine-tunes.
        np.savez_compressed(out / "out_of_fold.npz", labels=np.asarray(oof.labels), transformer=oof.transformer,
                            tokens=oof.tokens, senders=oof.senders if oof.senders is not None else np.zeros((0, 0)))
        position = {name: i for i, name in enumerate(oof.names)}
        same = [position[e.name] for e in val]
        cross_fitted = {
            "folds": config.cv_folds,
            "out_of_fold": metrics.report(oof.labels, fit_scores.tolist(), thresholds.spam).to_json(),
            # The saved transformer against the fold transformers on the same validation messages:
            # the cross-fitted weights and thresholds only carry over if their logits agree in scale.
            "validation_transformer_logits": {
                "version_mean_abs": float(np.mean(np.abs(t_logits))),
                "folds_mean_abs": float(np.mean(np.abs(oof.transformer[same]))),
                "correlation": float(np.corrcoef(t_logits, oof.transformer[same])[0, 1]),
            },
        }
    ensemble_json: dict[str, Any] = ensemble.to_json()
    screen: dict[str, float] = {}
    if model.transformer.can_screen:
        # The int8 graph screens messages (daemon/spam/transformer.py); how far it strays from fp32
        # on validation sets how close to a threshold a message must be to get an fp32 second look.
        t8 = model.transformer.screen_logits(t_texts)
        worst = float(np.max(np.abs(t8 - t_logits))) if len(val) else 0.0
        screen = {"max_abs_logit_diff": worst, "margin": 2 * worst + 0.5}
        ensemble_json["int8_screen_margin"] = screen["margin"]
    write_json(out / "ensemble.json", ensemble_json)
    write_json(out / "thresholds.json", thresholds.to_json())

    val_report = metrics.report(val_labels, scores.tolist(), thresholds.spam).to_json()
    parts = {
        "transformer_auc": metrics.roc_auc(val_labels, t_logits.tolist()),
        "tokens_auc": metrics.roc_auc(val_labels, k_logits.tolist()),
        "ensemble": ensemble.to_json(),
        "int8_screen": screen,
    }
    if cross_fitted:
        parts["cross_fit"] = cross_fitted
    result_metrics = {"validation": val_report, "validation_parts": parts, "training": fine_tune_metrics}
    write_json(out / "metrics.json", result_metrics)
    return val_report, result_metrics, thresholds
