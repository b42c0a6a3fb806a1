"""The pure parts of the learning-loop simulation (bench/learning_sim.py): no models, no files.

Kept apart so the unit tests (tests/learning/test_learning_stream.py) can check them without
torch or bogofilter (recall at a fixed FPR is the product's ``training.evaluation.recall_at_fpr``):

* the stream: the 2003 groups shuffled with a fixed seed and cut into equal windows, as the TREC
  spam track replays a mailbox in order;
* the person: who notices which errors of the verdicts they saw, which ham they answer (an
  implicit ham label), and when each label arrives (a delay in windows);
* the figures: FPR and spam recall of a window, recall at a fixed FPR, and the verdict against
  bogofilter.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Correction:
    """A label the person gave: a correction of a wrong verdict, or a reply that marks a thread as ham.

    ``seen_in``: the window whose verdict was wrong; ``available_at``: the first window after
    which the scheduler can use it (``seen_in + delay``); ``order``: position in time among all
    corrections, for "the newest 20 %".
    """

    index: int
    label: int
    seen_in: int
    available_at: int
    order: int
    source: str = "user_move"
    """As the product records it: ``user_move`` (moved into or out of Junk), ``replied_thread`` (implicit ham),
    ``left_in_junk`` (filed to Junk and not rescued: implicit spam, never shown to the gate)."""

    @property
    def when(self) -> tuple[int, int]:
        """Time order for the gate's split (daemon.learning.gate.split_by_time): arrival, then position."""
        return (self.available_at, self.order)


def windows(n_items: int, n_windows: int, seed: int) -> list[list[int]]:
    """Item indices in a seeded shuffled order, cut into ``n_windows`` windows of nearly equal size."""
    if n_windows < 1 or n_windows > n_items:
        raise ValueError(f"n_windows must be between 1 and the number of messages ({n_items}), got {n_windows}")
    order = list(range(n_items))
    random.Random(seed).shuffle(order)
    bounds = [round(i * n_items / n_windows) for i in range(n_windows + 1)]
    return [order[bounds[i]:bounds[i + 1]] for i in range(n_windows)]


def person_corrections(indices: Sequence[int], labels: Sequence[int], flagged: Sequence[int], window: int,
                       fn_share: float, fp_share: float, delay: int, rng: random.Random,
                       first_order: int) -> list[Correction]:
    """The corrections a person makes for one window's errors.

    A ham flagged as spam (false positive) is noticed with probability ``fp_share``, a spam left in
    the inbox (false negative) with ``fn_share``. Correct verdicts are never labelled.
    """
    out: list[Correction] = []
    for index, label, spam_verdict in zip(indices, labels, flagged, strict=True):
        if label == spam_verdict:
            continue
        share = fp_share if label == 0 else fn_share
        if rng.random() < share:
            out.append(Correction(index=index, label=label, seen_in=window, available_at=window + delay,
                                  order=first_order + len(out)))
    return out


def person_replies(indices: Sequence[int], labels: Sequence[int], flagged: Sequence[int], groups: Sequence[str],
                   reply_share: dict[str, float], window: int, delay: int, rng: random.Random,
                   first_order: int) -> list[Correction]:
    """The ham a person answers in one window: implicit ham labels (``replied_thread``), as the product records them.

    Only ham the person saw in the inbox (not flagged as spam) is answered, each with the share
    ``reply_share`` gives its corpus group (e.g. more of the easy ham than of the hard ham); the
    product notices the reply at its next look, here ``delay`` windows later. Spam is never answered.
    """
    out: list[Correction] = []
    for index, label, spam_verdict, group in zip(indices, labels, flagged, groups, strict=True):
        if label == 1 or spam_verdict:
            continue
        if rng.random() < reply_share.get(group, 0.0):
            out.append(Correction(index=index, label=0, seen_in=window, available_at=window + delay,
                                  order=first_order + len(out), source="replied_thread"))
    return out


def left_in_junk(indices: Sequence[int], flagged: Sequence[int], rescued: set[int], window: int, delay: int,
                 first_order: int) -> list[Correction]:
    """Spam verdicts of one window the person left in Junk: implicit spam labels (``left_in_junk``).

    As the product records them: a message filed to Junk that was not moved out within the grace
    period is spam evidence. ``rescued`` holds the indices the person moved out (their ham
    corrections); a false positive they never noticed becomes a wrong spam label, as it would in a
    real mailbox.
    """
    out: list[Correction] = []
    for index, spam_verdict in zip(indices, flagged, strict=True):
        if spam_verdict and index not in rescued:
            out.append(Correction(index=index, label=1, seen_in=window, available_at=window + delay,
                                  order=first_order + len(out), source="left_in_junk"))
    return out


def available(corrections: Sequence[Correction], after_window: int) -> list[Correction]:
    """Corrections the scheduler can use once ``after_window`` is over, oldest first."""
    return sorted((c for c in corrections if c.available_at <= after_window), key=lambda c: c.order)


def rates(labels: Sequence[int], flagged: Sequence[int]) -> dict[str, float]:
    """FPR (ham flagged as spam) and spam recall of binary verdicts (1 = spam)."""
    ham = [f for y, f in zip(labels, flagged, strict=True) if y == 0]
    spam = [f for y, f in zip(labels, flagged, strict=True) if y == 1]
    return {"fpr": sum(ham) / len(ham) if ham else 0.0, "recall": sum(spam) / len(spam) if spam else 0.0}


def _compare(ours: float, theirs: float, level_points: float) -> tuple[str, float]:
    gap = 100 * (ours - theirs)
    if gap >= 0:
        return "at or above bogofilter", gap
    if gap >= -level_points:
        return f"level (below by {-gap:.1f} points, within the {level_points:g}-point noise allowance)", gap
    return f"below bogofilter by {-gap:.1f} points", gap


def verdict(mailsense: dict[str, float], bogofilter: dict[str, float], oracle: dict[str, float],
            max_fpr: float = 0.0025, level_points: float = 2.0) -> dict[str, object]:
    """Is Mailsense's final recall, at an FPR within ``max_fpr``, at or above bogofilter's?

    Mailsense's final recall counts at its own operating point (its own verdicts on the last
    window), which must keep its FPR within ``max_fpr``. bogofilter runs far above that FPR at its
    own cut-offs, so its recall at ``max_fpr`` is read with its threshold chosen on the last window
    itself (``oracle``: the best it could do there). The ranking reading, both systems with the
    threshold chosen on the window, is stated too. A shortfall of up to ``level_points`` recall
    points counts as level.
    """
    within = mailsense["fpr"] <= max_fpr + 1e-12
    operating, gap = _compare(mailsense["recall"], oracle["bogofilter"], level_points)
    ranking, oracle_gap = _compare(oracle["mailsense"], oracle["bogofilter"], level_points)
    met = within and gap >= -level_points
    text = (f"Last window: Mailsense's own verdicts FPR {mailsense['fpr']:.2%}, recall {mailsense['recall']:.1%}"
            f" ({'within' if within else 'above'} the {max_fpr:.2%} FPR limit); bogofilter at its own cut-offs "
            f"(unsure counted as spam) FPR {bogofilter['fpr']:.2%}, recall {bogofilter['recall']:.1%}, and "
            f"{oracle['bogofilter']:.1%} at FPR <= {max_fpr:.2%} with its threshold chosen on the window. "
            f"Mailsense's final recall is {operating}. Ranking (both thresholds chosen on the window): Mailsense "
            f"{oracle['mailsense']:.1%}, bogofilter {oracle['bogofilter']:.1%}: {ranking}. Requirement (final recall "
            f"at FPR <= {max_fpr:.2%} at or above bogofilter's, a shortfall of {level_points:g} points counted as "
            f"level): {'met' if met else 'not met'}.")
    return {"text": text, "met": met, "fpr_within_limit": within, "recall_gap_points": round(gap, 2),
            "level_points": level_points,
            "recall_at_fpr_limit_last_window": {k: round(v, 5) for k, v in oracle.items()},
            "recall_at_fpr_limit_gap_points": round(oracle_gap, 2),
            "ranking_level_or_better": oracle_gap >= -level_points}
