"""The data split of a token refresh: the mailbox's labels always take part in choosing the threshold."""

from __future__ import annotations

from collections import Counter
from typing import cast

from daemon.learning.dataset import balance_by_time
from daemon.learning.retrain import refresh_data
from daemon.mail.mime import ParsedMessage
from daemon.training.data import Example


def examples(prefix: str, n_ham: int, n_spam: int) -> list[Example]:
    # The split looks at names and labels only; the message is not read.
    message = cast(ParsedMessage, None)
    return [Example(f"{prefix}{i}", message, 0) for i in range(n_ham)] + [
        Example(f"{prefix}s{i}", message, 1) for i in range(n_spam)]


def test_labels_are_split_apart_from_the_base_corpus_and_weighted_only_in_training() -> None:
    base = examples("base:", 900, 100)
    labelled = examples("db:", 20, 10)
    data = refresh_data(base, labelled, val_fraction=0.15, seed=7, correction_weight=3, calibration_fraction=0.3)

    calibration = Counter((e.name.split(":")[0], e.label) for e in data.calibration)
    # Per class: 15 % of the base corpus and 30 % of the labels, however small the labels' share of the whole.
    assert calibration == {("base", 0): 135, ("base", 1): 15, ("db", 0): 6, ("db", 1): 3}
    assert len({e.name for e in data.calibration}) == len(data.calibration)  # each once

    train = Counter(e.name for e in data.train)
    assert {n for n, k in train.items() if n.startswith("db:")} == {e.name for e in labelled} - {
        e.name for e in data.calibration}
    assert {k for n, k in train.items() if n.startswith("db:")} == {3}
    assert {k for n, k in train.items() if n.startswith("base:")} == {1}
    assert not set(train) & {e.name for e in data.calibration}  # nothing calibrates on what it trained on


def test_without_labels_the_refresh_is_the_base_corpus_split() -> None:
    data = refresh_data(examples("base:", 40, 20), [], val_fraction=0.25, seed=1, correction_weight=3,
                        calibration_fraction=0.3)
    assert (len(data.train), len(data.calibration)) == (45, 15)


def test_the_larger_class_keeps_only_its_newest_up_to_the_ratio() -> None:
    items = [(t, 0) for t in range(30)] + [(t, 1) for t in range(30, 34)]  # (time, label): 30 ham, 4 spam
    kept, left_out = balance_by_time(items, lambda x: x[1], lambda x: x[0], max_ratio=5)
    assert left_out == 10 and kept == [(t, 0) for t in range(10, 30)] + [(t, 1) for t in range(30, 34)]
    assert balance_by_time(items, lambda x: x[1], lambda x: x[0], max_ratio=10) == (items, 0)
