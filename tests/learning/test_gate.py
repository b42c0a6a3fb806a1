"""The promotion gate's rules on hand-made scores: no model with a higher FPR is ever promoted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.learning.gate import GateMargins, OperatingPoint, decide, judge, operating_point, split_by_time

LABELS = [0] * 10 + [1] * 10


def point(ham_scores: list[float], spam_scores: list[float], threshold: float = 0.5) -> OperatingPoint:
    return operating_point([0] * len(ham_scores) + [1] * len(spam_scores), ham_scores + spam_scores, threshold)


def test_operating_point_counts_fpr_and_recall_at_its_own_threshold() -> None:
    p = point([0.1] * 9 + [0.7], [0.9] * 6 + [0.2] * 4, threshold=0.6)
    assert (p.n_ham, p.n_spam) == (10, 10)
    assert p.fpr == pytest.approx(0.1)
    assert p.recall == pytest.approx(0.6)
    assert p.threshold == 0.6
    # at FPR 0 the threshold moves above the 0.7 ham: the six 0.9 spam are still caught
    assert p.recall_at_target_fpr == pytest.approx(0.6)
    assert p.to_json()["fpr"] == pytest.approx(0.1)
    assert OperatingPoint.from_json(p.to_json()) == p


def test_a_candidate_with_a_higher_fpr_is_rejected_even_with_better_recall() -> None:
    live = point([0.1] * 10, [0.9] * 5 + [0.1] * 5)
    candidate = point([0.1] * 9 + [0.9], [0.9] * 10)
    decision = decide(live, candidate)
    assert not decision.promote
    assert "false-positive" in decision.reason
    assert (decision.fpr_live, decision.fpr_candidate) == (0.0, pytest.approx(0.1))
    assert (decision.recall_live, decision.recall_candidate) == (0.5, 1.0)


def test_the_fpr_margin_allows_a_tiny_increase() -> None:
    live = point([0.1] * 10, [0.9] * 5 + [0.1] * 5)
    candidate = point([0.1] * 9 + [0.9], [0.9] * 10)
    assert decide(live, candidate, GateMargins(fpr=0.1)).promote
    assert not decide(live, candidate, GateMargins(fpr=0.09)).promote


def test_lower_recall_is_rejected_beyond_the_margin_and_accepted_within() -> None:
    live = point([0.1] * 10, [0.9] * 8 + [0.1] * 2)
    candidate = point([0.1] * 10, [0.9] * 7 + [0.1] * 3)
    rejected = decide(live, candidate)
    assert not rejected.promote and "recall" in rejected.reason
    assert decide(live, candidate, GateMargins(recall=0.1)).promote


def test_equal_or_better_is_promoted() -> None:
    live = point([0.1] * 10, [0.9] * 8 + [0.1] * 2)
    assert decide(live, live).promote
    better = point([0.1] * 10, [0.9] * 10)
    decision = decide(live, better)
    assert decision.promote and decision.reason.startswith("promoted")
    assert decision.to_json()["recall_candidate"] == 1.0


def test_without_a_live_model_the_candidate_is_promoted_but_never_on_one_class() -> None:
    candidate = point([0.1] * 10, [0.9] * 10)
    assert decide(None, candidate).promote
    assert not decide(None, point([0.1] * 10, [])).promote


def test_points_from_different_sets_cannot_be_compared() -> None:
    with pytest.raises(ValueError):
        decide(point([0.1] * 10, [0.9] * 10), point([0.1] * 9, [0.9] * 10))


def test_split_by_time_holds_out_the_newest_fifth_never_the_oldest() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    items = [(i, start + timedelta(minutes=i)) for i in range(10)]
    shuffled = items[5:] + items[:5]
    split = split_by_time(shuffled, lambda item: item[1])
    assert [i for i, _ in split.held_out] == [8, 9]
    assert sorted(i for i, _ in split.train) == list(range(8))
    assert not set(split.train) & set(split.held_out)


def test_split_by_time_with_few_labels_trains_on_all_of_them() -> None:
    split = split_by_time([1, 2, 3, 4], lambda x: x)
    assert split.train == [1, 2, 3, 4] and split.held_out == []
    with pytest.raises(ValueError):
        split_by_time([1], lambda x: x, fraction=1.0)


def test_fewer_false_positives_with_lower_recall_is_promoted_when_it_ranks_as_well_at_the_live_fpr() -> None:
    labels = [0] * 10 + [1] * 10
    # Live overshoots its FPR target: one ham misfiled, 8 of 10 spam caught at its threshold 0.5.
    live = [0.1] * 9 + [0.6] + [0.9] * 8 + [0.2] * 2
    # The candidate ranks that ham lower and chose a stricter threshold (0.85): FPR 0, recall 0.6;
    # moved to live's FPR (one ham allowed) it would catch 9 of 10.
    candidate = [0.1] * 9 + [0.8] + [0.95] * 6 + [0.82] * 3 + [0.1]
    judgement = judge(labels, candidate, 0.85, live, 0.5)
    decision = judgement.decision
    assert decision.promote, decision.reason
    assert (decision.fpr_live, decision.fpr_candidate) == (pytest.approx(0.1), 0.0)
    assert (decision.recall_live, decision.recall_candidate) == (0.8, 0.6)
    assert decision.recall_candidate_at_live_fpr == pytest.approx(0.9)
    assert "fewer false positives" in decision.reason


def test_fewer_false_positives_but_a_worse_ranking_is_rejected() -> None:
    labels = [0] * 10 + [1] * 10
    live = [0.1] * 9 + [0.6] + [0.9] * 8 + [0.2] * 2
    # FPR 0 only by catching little: at live's FPR it still catches 5 of 10, below live's 8.
    candidate = [0.1] * 8 + [0.5, 0.8] + [0.95] * 5 + [0.3] * 5
    decision = judge(labels, candidate, 0.85, live, 0.5).decision
    assert not decision.promote
    assert decision.recall_candidate_at_live_fpr == pytest.approx(0.5)
    assert "lower spam recall" in decision.reason and "at the live model's FPR" in decision.reason


def test_a_higher_fpr_is_never_rescued_by_the_ranking() -> None:
    labels = [0] * 10 + [1] * 10
    live = [0.1] * 10 + [0.9] * 5 + [0.2] * 5
    candidate = [0.1] * 9 + [0.9] + [0.95] * 10
    decision = judge(labels, candidate, 0.5, live, 0.5).decision
    assert not decision.promote and "false-positive" in decision.reason
    assert decision.recall_candidate_at_live_fpr is None
