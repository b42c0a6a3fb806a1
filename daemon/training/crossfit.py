"""Cross-fitting: out-of-fold scores of every labelled message, for the ensemble and the thresholds.

The spam threshold targets 0.1 % of ham misfiled. On a validation part of 498 ham that means "above
the highest validation ham", and how many unseen ham land above the highest of 498 is mostly luck:
if the scores of validation and test ham are exchangeable, the chance that 3 or more of 831 test ham
score above all 498 validation ham is about 24 %, whatever the model (docs/benchmarks.md). With
``cv_folds = k`` every message gets a score from a model that did not learn from it: k fine-tunes on
(k-1)/k of the data, for the main model's number of epochs, plus the token statistics and sender
reputation of the same folds. The weights and thresholds are then fitted on all of them (3,319 ham for
the shared corpus's train split: the 0.1 % threshold sits between the 3rd and 4th highest ham score).

The out-of-fold scores come from fold models, not from the model version that is saved; the fold
transformers train on 80 % of the data for the same epochs as the version's transformer on 85 %, so
their scores are on the same scale, and ``metrics.json`` records the version's own validation figures
under the cross-fitted thresholds to show it.
"""

from __future__ import annotations

import math
import multiprocessing
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from daemon.spam.senders import FEATURES, SenderReputation
from daemon.spam.text import TextSettings, build_text
from daemon.spam.tokens import TOKEN_TEXT_SETTINGS, TokenModel
from daemon.spam.transformer import TransformerScorer
from daemon.training.data import Example, stratified_folds
from daemon.training.recipe import TrainConfig, fine_tune


@dataclass(frozen=True)
class OutOfFold:
    """Per labelled message, the outputs of parts that did not learn from it."""

    transformer: np.ndarray
    tokens: np.ndarray
    senders: np.ndarray | None
    labels: list[int]
    names: list[str]


def best_epoch(history: list[dict[str, Any]], default: float) -> float:
    """The epoch whose validation loss early stopping kept (the fold models train exactly that long)."""
    evaluated = [h for h in history if "eval_loss" in h]
    if not evaluated:
        return default
    return float(math.ceil(round(min(evaluated, key=lambda h: h["eval_loss"])["epoch"], 3)))


def score_fold(examples: list[Example], held: list[int], config: TrainConfig, text_settings: TextSettings,
               epochs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Train every part on the examples outside ``held`` and score the ``held`` ones with them."""
    held_set = set(held)
    fit = [e for i, e in enumerate(examples) if i not in held_set]
    out = [examples[i] for i in held]
    with tempfile.TemporaryDirectory(prefix="mailsense-fold-") as tmp:
        fine_tune(fit, [], Path(tmp) / "transformer", replace(config, epochs=epochs, patience=0), text_settings)
        scorer = TransformerScorer(Path(tmp) / "transformer", max_length=config.max_length,
                                   quantize=config.quantize, runtime="torch", threads=config.threads)
        transformer = scorer.logits([build_text(e.message, text_settings) for e in out])
    token_model = TokenModel.fit([build_text(e.message, TOKEN_TEXT_SETTINGS) for e in fit],
                                 [e.label for e in fit], config.token_settings)
    tokens = token_model.logits([build_text(e.message, TOKEN_TEXT_SETTINGS) for e in out])
    senders = None
    if config.sender_reputation:
        reputation = SenderReputation.fit((e.message for e in fit), (e.label for e in fit), config.sender_ham_side)
        senders = reputation.features([e.message for e in out])
    return transformer, tokens, senders


def _score_fold_job(examples: list[Example], held: list[int], config: TrainConfig, text_settings: TextSettings,
                    epochs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``score_fold`` in a worker process, with the worker's own torch thread count."""
    import torch

    torch.set_num_threads(config.threads or 1)
    return score_fold(examples, held, config, text_settings, epochs)


def cross_fit(examples: list[Example], config: TrainConfig, text_settings: TextSettings, epochs: float,
              say: Callable[[str], None]) -> OutOfFold:
    """Out-of-fold transformer logits, token logits and sender features for every example.

    With ``config.cv_jobs > 1`` the folds run in that many worker processes (spawned: forking a
    process that already runs torch threads can deadlock). On 2 cores, two one-thread fine-tunes
    side by side finish sooner than two-thread fine-tunes one after the other.
    """
    n = len(examples)
    transformer = np.zeros(n, dtype=np.float32)
    tokens = np.zeros(n, dtype=np.float32)
    senders = np.zeros((n, len(FEATURES))) if config.sender_reputation else None
    folds = stratified_folds(examples, config.cv_folds, config.seed)
    say(f"cross-fitting {len(folds)} folds ({min(config.cv_jobs, len(folds))} at a time): each fine-tunes on "
        f"about {n - len(folds[0])} messages for {epochs:g} epochs and scores the rest")

    def keep(number: int, scores: tuple[np.ndarray, np.ndarray, np.ndarray | None]) -> None:
        held = folds[number]
        transformer[held], tokens[held], fold_senders = scores
        if senders is not None and fold_senders is not None:
            senders[held] = fold_senders
        say(f"cross-fitting: fold {number + 1}/{len(folds)} scored")

    if config.cv_jobs <= 1:
        for number, held in enumerate(folds):
            keep(number, score_fold(examples, held, config, text_settings, epochs))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=config.cv_jobs, mp_context=context) as pool:
            jobs = {pool.submit(_score_fold_job, examples, held, config, text_settings, epochs): number
                    for number, held in enumerate(folds)}
            for job in as_completed(jobs):
                keep(jobs[job], job.result())
    return OutOfFold(transformer, tokens, senders, [e.label for e in examples], [e.name for e in examples])
