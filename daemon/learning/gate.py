"""The promotion gate: a retrained spam model replaces the live one only if it is not worse.

Both models are scored on the same held-out set, each at its *own* spam threshold (the
operating point a daemon would really run at). False positives cost more than missed spam, so
the candidate must not misfile a larger share of ham than the live model (beyond a tiny,
configured margin, 0 by default) and must not catch less spam beyond a configured margin.

A candidate that misfiles *less* ham usually catches a little less spam at its own threshold: its
threshold was chosen for the target FPR, the live one overshoots it. Comparing the two operating
points would keep the live model, and its false positives, forever. So recall is then compared at
equal false positives: the candidate is promoted when, with its threshold moved to the live
model's FPR on the held-out set, it catches at least the live model's spam (within the margin).
Its ranking is at least as good, and it runs at the lower FPR.

The held-out set is a fixed evaluation corpus plus the newest share of the person's
corrections by time (:func:`split_by_time`); those newest corrections are never trained on in
that run, so the gate asks exactly the question that matters: does the candidate do better on
the mail that arrived most recently?

Everything here is pure (lists in, numbers out), so the benchmark simulation and the tests use
the very rule the scheduler applies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from daemon.training import evaluation

T = TypeVar("T")

HELD_OUT_FRACTION = 0.2
"""Share of the labels, newest by time, kept for the gate and never trained on."""


@dataclass(frozen=True)
class OperatingPoint:
    """How a model does on a labelled set at its own spam threshold (verdict spam when score >= it)."""

    n_ham: int
    n_spam: int
    threshold: float
    fpr: float
    recall: float
    target_fpr: float
    recall_at_target_fpr: float
    """Spam recall with the threshold re-chosen on this set so at most ``target_fpr`` of ham is misfiled."""
    auc: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OperatingPoint:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def operating_point(labels: Sequence[int], scores: Sequence[float], threshold: float,
                    target_fpr: float = 0.001) -> OperatingPoint:
    """FPR and spam recall of ``scores`` at ``threshold``; also recall at ``target_fpr`` (1 = spam)."""
    if len(labels) != len(scores):
        raise ValueError("labels and scores differ in length")
    predicted = [1 if s >= threshold else 0 for s in scores]
    c = evaluation.confusion(labels, predicted)
    auc = evaluation.roc_auc(labels, scores)
    return OperatingPoint(
        n_ham=c.fp + c.tn, n_spam=c.tp + c.fn, threshold=float(threshold), fpr=evaluation.fpr(c),
        recall=evaluation.recall(c), target_fpr=target_fpr,
        recall_at_target_fpr=evaluation.recall_at_fpr(labels, scores, target_fpr) if labels else 0.0,
        auc=auc if auc == auc else 0.0,  # NaN (one class only) stored as 0: JSON has no NaN
    )


@dataclass(frozen=True)
class GateMargins:
    """How much worse than the live model a candidate may be and still be promoted."""

    fpr: float = 0.0
    """Allowed FPR increase (absolute, e.g. 0.0005 = 0.05 points); 0 = never a higher FPR."""
    recall: float = 0.0
    """Allowed spam-recall decrease at the operating point (absolute, e.g. 0.01 = 1 point)."""


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    fpr_live: float | None
    fpr_candidate: float
    recall_live: float | None
    recall_candidate: float
    recall_candidate_at_live_fpr: float | None = None
    """With a lower FPR than live: the candidate's recall with its threshold moved to live's FPR."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def decide(live: OperatingPoint | None, candidate: OperatingPoint, margins: GateMargins | None = None,
           candidate_recall_at_live_fpr: float | None = None) -> GateDecision:
    """Promote ``candidate`` only if its FPR and recall are no worse than ``live``'s beyond ``margins``.

    Both points must come from the same held-out set. Without a live model (nothing active yet)
    the candidate is promoted. A held-out set without ham or without spam cannot show either
    figure, so nothing is promoted on it. A candidate with a lower FPR and lower recall is
    promoted when ``candidate_recall_at_live_fpr`` (its recall at live's FPR, see :func:`judge`)
    is within the recall margin of live's recall.
    """
    margins = margins or GateMargins()
    if candidate.n_ham == 0 or candidate.n_spam == 0:
        return GateDecision(False, "held-out set lacks ham or spam; cannot compare",
                            live.fpr if live else None, candidate.fpr,
                            live.recall if live else None, candidate.recall)
    if live is None:
        return GateDecision(True, "no live model to compare with", None, candidate.fpr, None, candidate.recall)
    if (live.n_ham, live.n_spam) != (candidate.n_ham, candidate.n_spam):
        raise ValueError("live and candidate were scored on different held-out sets")
    figures = (f"FPR {candidate.fpr:.4%} vs live {live.fpr:.4%}, "
               f"recall {candidate.recall:.4f} vs live {live.recall:.4f}")
    eps = 1e-12  # equal figures computed along different paths must compare equal
    if candidate.fpr > live.fpr + margins.fpr + eps:
        reason = f"rejected: higher false-positive rate ({figures}; margin {margins.fpr:g})"
        promote = False
    elif candidate.recall >= live.recall - margins.recall - eps:
        reason = f"promoted: not worse ({figures})"
        promote = True
    elif (candidate.fpr < live.fpr - eps and candidate_recall_at_live_fpr is not None
          and candidate_recall_at_live_fpr >= live.recall - margins.recall - eps):
        reason = (f"promoted: fewer false positives ({figures}); at the live model's FPR it would catch "
                  f"{candidate_recall_at_live_fpr:.4f} of the spam")
        promote = True
    else:
        at_live = ("" if candidate_recall_at_live_fpr is None or candidate.fpr >= live.fpr - eps
                   else f", {candidate_recall_at_live_fpr:.4f} at the live model's FPR")
        reason = f"rejected: lower spam recall ({figures}{at_live}; margin {margins.recall:g})"
        promote = False
    return GateDecision(promote, reason, live.fpr, candidate.fpr, live.recall, candidate.recall,
                        candidate_recall_at_live_fpr if candidate.fpr < live.fpr - eps else None)


@dataclass(frozen=True)
class Judgement:
    live: OperatingPoint | None
    candidate: OperatingPoint
    decision: GateDecision


def judge(labels: Sequence[int], candidate_scores: Sequence[float], candidate_threshold: float,
          live_scores: Sequence[float] | None, live_threshold: float | None, target_fpr: float = 0.001,
          margins: GateMargins | None = None) -> Judgement:
    """Both versions' operating points on one held-out set, and the gate's decision on them.

    The scheduler's jobs and the learning-loop benchmark both call this, so the benchmark
    measures the rule the product applies.
    """
    candidate = operating_point(labels, candidate_scores, candidate_threshold, target_fpr)
    if live_scores is None or live_threshold is None:
        return Judgement(None, candidate, decide(None, candidate, margins))
    live = operating_point(labels, live_scores, live_threshold, target_fpr)
    at_live = evaluation.recall_at_fpr(labels, candidate_scores, live.fpr) if candidate.n_spam else None
    return Judgement(live, candidate, decide(live, candidate, margins, at_live))


@dataclass(frozen=True)
class TimeSplit(Generic[T]):
    """Labels to train on, and the newest ones held out for the gate."""

    train: list[T]
    held_out: list[T]


def split_by_time(items: Sequence[T], when: Callable[[T], Any],
                  fraction: float = HELD_OUT_FRACTION) -> TimeSplit[T]:
    """The newest ``fraction`` of ``items`` by ``when`` (ties in input order) held out, the rest to train on.

    ``floor(fraction * n)`` items are held out, so a handful of labels all go to training; the
    fixed evaluation corpus keeps the gate meaningful until corrections accumulate.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"held-out fraction must be in [0, 1), got {fraction}")
    ordered = sorted(range(len(items)), key=lambda i: (when(items[i]), i))
    n_held = int(fraction * len(items) + 1e-9)
    cut = len(items) - n_held
    return TimeSplit([items[i] for i in ordered[:cut]], [items[i] for i in ordered[cut:]])
