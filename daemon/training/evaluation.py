"""Spam metrics as pure functions; spam is the positive class (label 1).

Ham flagged as spam (the false-positive rate) is reported first everywhere, because a lost
legitimate message costs more than a missed spam; ``recall_at_fpr`` answers "how much spam
do we catch if we may misfile at most this share of ham".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Confusion:
    tp: int  # spam called spam
    fp: int  # ham called spam
    tn: int  # ham called ham
    fn: int  # spam called ham


def confusion(labels: Sequence[int], predicted: Sequence[int]) -> Confusion:
    if len(labels) != len(predicted):
        raise ValueError("labels and predictions differ in length")
    tp = sum(1 for y, p in zip(labels, predicted, strict=True) if y == 1 and p == 1)
    fp = sum(1 for y, p in zip(labels, predicted, strict=True) if y == 0 and p == 1)
    tn = sum(1 for y, p in zip(labels, predicted, strict=True) if y == 0 and p == 0)
    fn = sum(1 for y, p in zip(labels, predicted, strict=True) if y == 1 and p == 0)
    return Confusion(tp, fp, tn, fn)


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def fpr(c: Confusion) -> float:
    return _ratio(c.fp, c.fp + c.tn)


def fnr(c: Confusion) -> float:
    return _ratio(c.fn, c.fn + c.tp)


def precision(c: Confusion) -> float:
    return _ratio(c.tp, c.tp + c.fp)


def recall(c: Confusion) -> float:
    return _ratio(c.tp, c.tp + c.fn)


def f1(c: Confusion) -> float:
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Probability that a random spam scores above a random ham (ties count half); rank based."""
    pairs = sorted(zip(scores, labels, strict=True), key=lambda p: p[0])
    n_pos = sum(1 for _, y in pairs if y == 1)
    n_neg = len(pairs) - n_pos
    if not n_pos or not n_neg:
        return float("nan")
    rank_sum = 0.0
    i = 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + j) / 2 + 1  # 1-based average rank of the tie group
        rank_sum += mid_rank * sum(1 for k in range(i, j + 1) if pairs[k][1] == 1)
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def threshold_at_fpr(labels: Sequence[int], scores: Sequence[float], max_fpr: float) -> float:
    """The lowest threshold (verdict spam when score >= threshold) whose FPR is at most ``max_fpr``.

    With ``n`` ham at most ``floor(max_fpr * n)`` may score at or above it, so the threshold sits
    just above the next-highest ham score.
    """
    ham = sorted((s for s, y in zip(scores, labels, strict=True) if y == 0), reverse=True)
    if not ham:
        return min(scores, default=0.5)
    allowed = int(max_fpr * len(ham) + 1e-9)
    if allowed >= len(ham):
        return float("-inf")
    boundary = ham[allowed]
    above = [s for s in scores if s > boundary]
    # Midway to the next score above the boundary ham keeps the rule stable under tiny float noise.
    return (boundary + min(above)) / 2 if above else float(boundary) + 1e-9


def recall_at_fpr(labels: Sequence[int], scores: Sequence[float], max_fpr: float) -> float:
    t = threshold_at_fpr(labels, scores, max_fpr)
    spam = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    return _ratio(sum(1 for s in spam if s >= t), len(spam))


@dataclass(frozen=True)
class Report:
    n_ham: int
    n_spam: int
    threshold: float
    fpr: float
    fnr: float
    precision: float
    recall: float
    f1: float
    auc: float
    recall_at_fpr_0_001: float
    confusion: Confusion

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["recall_at_fpr_0.001"] = data.pop("recall_at_fpr_0_001")
        return data


def report(labels: Sequence[int], scores: Sequence[float], threshold: float) -> Report:
    """Every figure of ``mailsense eval spam`` for one threshold (verdict spam when score >= it)."""
    predicted = [1 if s >= threshold else 0 for s in scores]
    c = confusion(labels, predicted)
    return Report(
        n_ham=c.fp + c.tn, n_spam=c.tp + c.fn, threshold=threshold, fpr=fpr(c), fnr=fnr(c),
        precision=precision(c), recall=recall(c), f1=f1(c), auc=roc_auc(labels, scores),
        recall_at_fpr_0_001=recall_at_fpr(labels, scores, 0.001), confusion=c,
    )


def format_report(r: Report) -> str:
    c = r.confusion
    return "\n".join([
        f"messages: {r.n_ham} ham, {r.n_spam} spam; spam threshold {r.threshold:.4f}",
        f"ham misclassified (FPR):   {r.fpr:8.4%}",
        f"spam missed (FNR):         {r.fnr:8.4%}",
        f"precision:                 {r.precision:8.4f}",
        f"recall:                    {r.recall:8.4f}",
        f"F1:                        {r.f1:8.4f}",
        f"ROC AUC:                   {r.auc:8.4f}",
        f"spam recall at FPR 0.1 %:  {r.recall_at_fpr_0_001:8.4f}",
        "",
        "confusion matrix      predicted ham  predicted spam",
        f"  actual ham        {c.tn:14d}  {c.fp:14d}",
        f"  actual spam       {c.fn:14d}  {c.tp:14d}",
    ])
