from __future__ import annotations

import math

import pytest

from daemon.training import evaluation as metrics


def test_confusion_and_rates() -> None:
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    predicted = [0, 0, 0, 1, 1, 1, 1, 0]
    c = metrics.confusion(labels, predicted)
    assert c == metrics.Confusion(tp=3, fp=1, tn=3, fn=1)
    assert metrics.fpr(c) == 0.25
    assert metrics.fnr(c) == 0.25
    assert metrics.precision(c) == 0.75
    assert metrics.recall(c) == 0.75
    assert metrics.f1(c) == pytest.approx(0.75)


def test_empty_classes_do_not_divide_by_zero() -> None:
    c = metrics.confusion([0, 0], [0, 0])
    assert metrics.fnr(c) == 0.0 and metrics.precision(c) == 0.0 and metrics.f1(c) == 0.0
    assert math.isnan(metrics.roc_auc([0, 0], [0.1, 0.2]))
    with pytest.raises(ValueError):
        metrics.confusion([0], [0, 1])


def test_roc_auc_perfect_inverted_and_ties() -> None:
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert metrics.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert metrics.roc_auc([0, 1], [0.5, 0.5]) == 0.5
    # 4 pairs: (0.1 vs 0.4) win, (0.1 vs 0.35) win, (0.35h vs 0.4) win, (0.35h vs 0.35s) tie -> 3.5/4
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.35, 0.35, 0.4]) == pytest.approx(0.875)


def test_threshold_at_fpr_allows_floor_of_the_rate() -> None:
    labels = [0] * 10 + [1] * 4
    scores = [i / 100 for i in range(10)] + [0.05, 0.5, 0.6, 0.95]
    t0 = metrics.threshold_at_fpr(labels, scores, 0.0)
    assert 0.09 < t0 <= 0.5  # above every ham
    t1 = metrics.threshold_at_fpr(labels, scores, 0.1)  # one of ten ham may pass
    assert 0.08 < t1 <= 0.09
    assert metrics.recall_at_fpr(labels, scores, 0.0) == 0.75
    assert metrics.recall_at_fpr(labels, scores, 0.001) == 0.75


def test_report_and_formatting() -> None:
    labels = [0, 0, 0, 1, 1]
    scores = [0.1, 0.2, 0.7, 0.8, 0.9]
    r = metrics.report(labels, scores, 0.5)
    assert (r.n_ham, r.n_spam) == (3, 2)
    assert r.confusion == metrics.Confusion(tp=2, fp=1, tn=2, fn=0)
    assert r.recall_at_fpr_0_001 == 1.0
    assert r.to_json()["recall_at_fpr_0.001"] == 1.0
    text = metrics.format_report(r)
    assert "FPR" in text and "confusion matrix" in text and "ROC AUC" in text
