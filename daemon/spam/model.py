"""A trained spam model version, loaded from its directory, classifying messages in batches.

A model version directory holds everything needed to reproduce its verdicts::

    transformer/         fine-tuned BertForSequenceClassification + tokenizer (save_pretrained)
    tokens.npz/json      token-statistics logistic regression (daemon/spam/tokens.py)
    senders.json         sender reputation counts (daemon/spam/senders.py); absent in older versions
    text_settings.json   how each part builds its input text (daemon/spam/text.py)
    ensemble.json        weights combining the parts' outputs, fitted on the validation split
    thresholds.json      spam and unsure thresholds, chosen on the validation split
    metrics.json         validation (and optionally test) figures
    out_of_fold.npz      with cross-fitting: the out-of-fold part scores the weights were fitted on
    version.json         base checkpoint, max length, inference path, creation time

The score of a message is ``sigmoid(a * transformer_logit + b * token_logit + w · sender_log_odds + c)``. The
transformer runs in plain fp32 at 128 tokens by default. Dynamic int8 quantization of its Linear
layers (``quantize=True``) was measured 1.4-2x faster but less accurate on the test split, and
its scores depend slightly on which messages share a batch (activations are quantized per batch),
so it is an opt-in (``spam.int8``); see docs/benchmarks.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch

from daemon.cpu import available_cores
from daemon.mail.mime import ParsedMessage
from daemon.spam.senders import SenderReputation
from daemon.spam.text import TextSettings, build_text
from daemon.spam.tokens import TokenModel
from daemon.spam.transformer import TransformerScorer

VERDICTS = ("ham", "unsure", "spam")


@dataclass(frozen=True)
class Thresholds:
    """``spam``: score at or above it is spam; ``unsure``: at or above it (and below spam) is unsure."""

    spam: float
    unsure: float
    target_fpr: float = 0.001

    def verdict(self, score: float) -> str:
        if score >= self.spam:
            return "spam"
        if score >= self.unsure:
            return "unsure"
        return "ham"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Thresholds:
        return cls(spam=float(data["spam"]), unsure=float(data["unsure"]),
                   target_fpr=float(data.get("target_fpr", 0.001)))


@dataclass(frozen=True)
class Ensemble:
    transformer: float
    tokens: float
    bias: float
    senders: tuple[float, ...] = ()
    """Weights of the sender-reputation features; empty = the version does not use them."""

    def logit(self, transformer_logits: np.ndarray, token_logits: np.ndarray,
              sender_features: np.ndarray | None = None) -> np.ndarray:
        z = self.transformer * transformer_logits + self.tokens * token_logits + self.bias
        if self.senders and sender_features is not None:
            z = z + sender_features @ np.asarray(self.senders)
        return z

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["senders"] = list(self.senders)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Ensemble:
        return cls(float(data["transformer"]), float(data["tokens"]), float(data["bias"]),
                   tuple(float(w) for w in data.get("senders", ())))


@dataclass(frozen=True)
class Verdict:
    verdict: str  # 'spam' | 'unsure' | 'ham'
    score: float  # probability-like, 0..1


def sigmoid(x: np.ndarray) -> np.ndarray:
    # np.asarray only gives the expression (Any in numpy's stubs) its array type: no copy, same dtype
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -60, 60))))


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())  # each file holds one JSON object, written by training
    return data


class LoadOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`SpamModel.load`, as callers hand them through the registry."""

    quantize: bool | None
    threads: int | None
    max_length: int | None
    runtime: str


class SpamModel:
    """Everything a classify stage needs: ``SpamModel.load(path).classify(messages)``."""

    def __init__(self, directory: Path, transformer: TransformerScorer, tokens: TokenModel,
                 text_settings: TextSettings, token_text_settings: TextSettings, ensemble: Ensemble,
                 thresholds: Thresholds, info: dict[str, Any], screen_margin: float | None = None,
                 senders: SenderReputation | None = None) -> None:
        self.directory = directory
        self.transformer = transformer
        self.tokens = tokens
        self.senders = senders
        self.text_settings = text_settings
        self.token_text_settings = token_text_settings
        self.ensemble = ensemble
        self.thresholds = thresholds
        self.info = info
        self.screen_margin = screen_margin
        """How far (in transformer logits) the int8 screen may be from fp32; None = no screening."""
        self.last_rescored = 0
        """Messages the last :meth:`scores` call re-scored in fp32 (benchmarks report it)."""

    @classmethod
    def load(cls, directory: str | Path, *, quantize: bool | None = None, threads: int | None = None,
             max_length: int | None = None, runtime: str = "auto") -> SpamModel:
        """Load a model version directory; ``quantize=None`` uses the path it was calibrated with.

        ``runtime``: 'auto' (ONNX Runtime when the version has ``model.onnx``), 'onnx' or 'torch'.
        """
        directory = Path(directory)
        if not (directory / "version.json").exists():
            raise FileNotFoundError(f"{directory} is not a Mailsense model version (no version.json)")
        torch.set_num_threads(threads or available_cores())
        info = _read_json(directory / "version.json")
        texts = _read_json(directory / "text_settings.json")
        ens = _read_json(directory / "ensemble.json")
        transformer = TransformerScorer(
            directory / "transformer",
            max_length=max_length or int(info["max_length"]),
            quantize=bool(info.get("quantized", False)) if quantize is None else quantize,
            runtime=runtime,
            threads=threads,
        )
        return cls(
            directory=directory,
            transformer=transformer,
            tokens=TokenModel.load(directory),
            text_settings=TextSettings.from_json(texts["transformer"]),
            token_text_settings=TextSettings.from_json(texts["tokens"]),
            ensemble=Ensemble.from_json(ens),
            thresholds=Thresholds.from_json(_read_json(directory / "thresholds.json")),
            info=info,
            screen_margin=float(ens["int8_screen_margin"]) if "int8_screen_margin" in ens else None,
            senders=SenderReputation.load(directory),
        )

    def texts(self, messages: Sequence[ParsedMessage]) -> tuple[list[str], list[str]]:
        """What the transformer and the token model read, built once per message."""
        return ([build_text(m, self.text_settings) for m in messages],
                [build_text(m, self.token_text_settings) for m in messages])

    def sender_features(self, messages: Sequence[ParsedMessage]) -> np.ndarray | None:
        """Sender-reputation inputs, or None for a version without them."""
        return self.senders.features(messages) if self.senders is not None else None

    def component_logits(self, messages: Sequence[ParsedMessage], batch_size: int = 32
                         ) -> tuple[np.ndarray, np.ndarray]:
        """The transformer's (fp32) and the token model's spam logits (training fits the ensemble on them)."""
        t_texts, k_texts = self.texts(messages)
        return self.transformer.logits(t_texts, batch_size), self.tokens.logits(k_texts)

    def scores(self, messages: Sequence[ParsedMessage], batch_size: int = 32) -> np.ndarray:
        """Ensemble scores; with an int8 screen, fp32 only for messages near a threshold.

        The int8 logit is used where moving the transformer logit by ``screen_margin`` (twice the
        largest int8-vs-fp32 difference seen on validation, plus 0.5) could not cross the spam or
        the unsure threshold; every other message is re-scored in fp32. Verdicts therefore are the
        fp32 model's; the stored score of a clear case may differ from fp32 in the last digits.
        """
        self.last_rescored = 0
        t_texts, k_texts = self.texts(messages)
        k = self.tokens.logits(k_texts)
        s = self.sender_features(messages)
        if not (self.transformer.can_screen and self.screen_margin is not None and t_texts):
            return sigmoid(self.ensemble.logit(self.transformer.logits(t_texts, batch_size), k, s))
        t = self.transformer.screen_logits(t_texts)
        z = self.ensemble.logit(t, k, s)
        reach = abs(self.ensemble.transformer) * self.screen_margin
        close = np.zeros(len(t), dtype=bool)
        for threshold in (self.thresholds.spam, self.thresholds.unsure):
            if 0.0 < threshold < 1.0:
                close |= np.abs(z - math.log(threshold / (1.0 - threshold))) <= reach
        if close.any():
            rescored = np.flatnonzero(close)
            t[rescored] = self.transformer.logits([t_texts[i] for i in rescored], batch_size)
        self.last_rescored = int(close.sum())
        return sigmoid(self.ensemble.logit(t, k, s))

    def classify(self, messages: Sequence[ParsedMessage], batch_size: int = 32) -> list[Verdict]:
        """One (verdict, score) per message, in input order."""
        return [Verdict(self.thresholds.verdict(float(s)), float(s)) for s in self.scores(messages, batch_size)]


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
