"""The pure parts of the learning-loop benchmark (bench/learning_stream.py): windows, the person, the figures.

The simulation itself takes most of an hour; these keep its bookkeeping honest between runs.
"""

from __future__ import annotations

import random

import pytest

from bench.learning_stream import (
    Correction,
    available,
    left_in_junk,
    person_corrections,
    person_replies,
    rates,
    verdict,
    windows,
)
from daemon.learning.gate import split_by_time
from daemon.training.evaluation import recall_at_fpr


def test_windows_cover_every_message_once_in_a_seeded_order() -> None:
    cut = windows(10, 3, seed=7)
    assert [len(w) for w in cut] == [3, 4, 3]
    assert sorted(i for w in cut for i in w) == list(range(10))
    assert cut == windows(10, 3, seed=7)
    assert cut != windows(10, 3, seed=8)
    assert [i for w in cut for i in w] != list(range(10))  # shuffled, not in corpus order
    with pytest.raises(ValueError, match="n_windows"):
        windows(3, 4, seed=0)


def test_the_person_corrects_only_errors_with_the_given_shares_and_delay() -> None:
    indices, labels = [10, 11, 12, 13], [0, 1, 0, 1]
    flagged = [1, 0, 0, 1]  # a false positive (10), a false negative (11), two right verdicts
    everything = person_corrections(indices, labels, flagged, window=2, fn_share=1.0, fp_share=1.0, delay=1,
                                    rng=random.Random(0), first_order=5)
    assert [(c.index, c.label, c.seen_in, c.available_at, c.order) for c in everything] == [
        (10, 0, 2, 3, 5), (11, 1, 2, 3, 6)]
    only_fp = person_corrections(indices, labels, flagged, window=2, fn_share=0.0, fp_share=1.0, delay=0,
                                 rng=random.Random(0), first_order=0)
    assert [(c.index, c.available_at) for c in only_fp] == [(10, 2)]


def test_fn_share_is_a_share_of_missed_spam() -> None:
    n = 2000
    noticed = person_corrections(list(range(n)), [1] * n, [0] * n, window=0, fn_share=0.5, fp_share=1.0, delay=1,
                                 rng=random.Random(3), first_order=0)
    assert 0.45 * n < len(noticed) < 0.55 * n


def test_corrections_wait_for_their_delay_and_the_newest_fifth_goes_to_the_gate() -> None:
    made = [Correction(index=i, label=i % 2, seen_in=i // 4, available_at=i // 4 + 1, order=i) for i in range(12)]
    assert available(made, 0) == []
    assert [c.order for c in available(made, 1)] == [0, 1, 2, 3]
    assert len(available(made, 3)) == 12
    split = split_by_time(available(made, 3), lambda c: c.when, 0.2)  # the product's gate split
    assert [c.order for c in split.held_out] == [10, 11]  # floor(12 * 0.2) newest, never trained on
    assert [c.order for c in split.train] == list(range(10))


def test_rates_and_recall_at_fpr() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    assert rates(labels, [1, 0, 0, 0, 1, 1, 1, 0]) == {"fpr": 0.25, "recall": 0.75}
    assert rates([1], [1]) == {"fpr": 0.0, "recall": 1.0}
    scores = [0.1, 0.2, 0.3, 0.9, 0.95, 0.8, 0.5, 0.05]
    assert recall_at_fpr(labels, scores, 0.0) == 0.25  # only spam above the top ham (0.9) counts
    assert recall_at_fpr(labels, scores, 0.25) == 0.75  # one ham may pass: spam above 0.3


def test_verdict_compares_our_final_recall_with_bogofilters_best_at_the_fpr_limit() -> None:
    bogo = {"fpr": 0.06, "recall": 0.99}  # its own cut-offs, far above the limit
    oracle = {"mailsense": 0.80, "bogofilter": 0.90}  # thresholds chosen on the window
    assert verdict({"fpr": 0.0, "recall": 0.91}, bogo, oracle)["met"] is True
    level = verdict({"fpr": 0.0, "recall": 0.885}, bogo, oracle)
    assert level["met"] is True and "level" in str(level["text"]) and level["level_points"] == 2.0
    below = verdict({"fpr": 0.0, "recall": 0.85}, bogo, oracle)
    assert below["met"] is False and below["recall_gap_points"] == -5.0
    above_limit = verdict({"fpr": 0.01, "recall": 0.99}, bogo, oracle)
    assert above_limit["met"] is False and above_limit["fpr_within_limit"] is False
    assert above_limit["recall_at_fpr_limit_gap_points"] == -10.0
    assert above_limit["ranking_level_or_better"] is False


def test_the_person_answers_only_inbox_ham_with_the_share_of_its_group() -> None:
    n = 4000
    labels = [i % 2 for i in range(n)]  # odd = spam
    flagged = [1 if i % 4 == 2 else 0 for i in range(n)]  # half of the ham was junked: never answered
    groups = ["easy" if i % 8 < 4 else "hard" for i in range(n)]
    replies = person_replies(range(n), labels, flagged, groups, {"easy": 0.3, "hard": 0.1}, window=2, delay=1,
                             rng=random.Random(5), first_order=10)
    assert all(labels[r.index] == 0 and not flagged[r.index] for r in replies)
    assert {(r.label, r.source, r.seen_in, r.available_at) for r in replies} == {(0, "replied_thread", 2, 3)}
    assert [r.order for r in replies] == list(range(10, 10 + len(replies)))
    easy = sum(groups[r.index] == "easy" for r in replies) / 500  # 500 inbox ham per group
    hard = sum(groups[r.index] == "hard" for r in replies) / 500
    assert 0.25 < easy < 0.35 and 0.06 < hard < 0.14


def test_spam_verdicts_not_rescued_are_left_in_junk_spam_labels_even_when_wrong() -> None:
    indices, flagged = [20, 21, 22, 23], [1, 1, 0, 1]
    labels = left_in_junk(indices, flagged, rescued={21}, window=4, delay=2, first_order=9)
    assert [(c.index, c.label, c.source, c.seen_in, c.available_at, c.order) for c in labels] == [
        (20, 1, "left_in_junk", 4, 6, 9), (23, 1, "left_in_junk", 4, 6, 10)]
    # 23 may be ham the person never noticed in Junk: it becomes a wrong spam label, as in a real mailbox
