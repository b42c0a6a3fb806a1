"""What a retrain learns from and is judged on: the mailbox's labels, a base corpus, an evaluation corpus.

Labels come from ``spam_labels`` (corrections, review outcomes, bootstrap imports; the newest
label per message wins). A labelled message is rebuilt from its stored parsed columns, exactly
as the classify stage sees it, so training reads what inference reads; its raw bytes are needed
only when it was never parsed.

The corpora are read once per process and sampled with a fixed seed: every run draws the same
base sample and judges on the same evaluation set, so two runs differ only by their labels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from daemon.classify.stage import parsed_from_row
from daemon.config.learning_schedule import LearningSettings
from daemon.db.tables import Message
from daemon.training.data import Example, RawExample, load_path, parse_examples, split_validation
from daemon.training.starter import CORPUS

T = TypeVar("T")

SAMPLE_SEED = 20021
BATCH = 500


@dataclass(frozen=True)
class Label:
    """One labelled message of the mailbox, ready to train on."""

    id: int
    """``spam_labels.id`` of the newest label of the message."""
    message_id: int
    label: int  # 1 = spam, 0 = ham
    source: str
    created_at: datetime
    example: Example


NEWEST_LABELS_SQL = text(
    """
    SELECT DISTINCT ON (l.message_id) l.id, l.message_id, l.label, l.source, l.created_at
      FROM spam_labels l
     ORDER BY l.message_id, l.id DESC
    """
)


def load_labels(session: Session) -> list[Label]:
    """The newest label of every labelled message, oldest first."""
    rows = sorted(session.execute(NEWEST_LABELS_SQL).all(), key=lambda r: (r.created_at, r.id))
    labels: list[Label] = []
    for start in range(0, len(rows), BATCH):
        batch = rows[start:start + BATCH]
        messages = {m.id: m for m in session.scalars(select(Message).where(
            Message.id.in_([r.message_id for r in batch])))}
        for row in batch:
            message = messages.get(row.message_id)
            example = _example_of(message, int(row.label == "spam")) if message is not None else None
            if example is not None:
                labels.append(Label(int(row.id), int(row.message_id), int(row.label == "spam"), str(row.source),
                                    row.created_at, example))
        session.expunge_all()  # raw bytes and bodies of thousands of messages need not stay in the session
    return labels


def _example_of(message: Message, label: int) -> Example | None:
    name = f"db:{message.id}"
    if message.body_text is not None or message.subject is not None:
        return Example(name, parsed_from_row(message), label)
    if message.raw:
        parsed = parse_examples([RawExample(name, message.raw, label)])
        return parsed[0] if parsed else None
    return None


def count_labels_after(session: Session, label_id: int | None) -> int:
    return int(session.execute(text("SELECT count(*) FROM spam_labels WHERE id > :id"),
                               {"id": label_id or 0}).scalar() or 0)


def balance_problem(labels: list[Label], settings: LearningSettings) -> str | None:
    """Why these labels are not enough to retrain on, or None when they are."""
    counts = Counter(label.label for label in labels)
    spam, ham = counts[1], counts[0]
    if min(spam, ham) < settings.min_per_class:
        return (f"too few labels: {spam} spam, {ham} ham; at least {settings.min_per_class} of each are needed "
                "([learning] min_per_class)")
    return None


def balance_by_time(items: Sequence[T], label_of: Callable[[T], int], when: Callable[[T], Any],
                    max_ratio: float) -> tuple[list[T], int]:
    """The items to train on when one class outnumbers the other more than ``max_ratio`` to 1.

    All of the smaller class is kept, and of the larger class only its newest ``max_ratio`` times
    as many, so a mailbox whose person answers much of their mail (implicit ham) but junks little
    spam still retrains, on its recent mail, without drifting towards one class. Returns the kept
    items in their input order and how many were left out.
    """
    by_class: dict[int, list[int]] = {0: [], 1: []}
    for i, item in enumerate(items):
        by_class[label_of(item)].append(i)
    small = min(len(by_class[0]), len(by_class[1]))
    cap = int(max_ratio * small + 1e-9)
    dropped: set[int] = set()
    for indices in by_class.values():
        if len(indices) > cap:
            newest_first = sorted(indices, key=lambda i: (when(items[i]), i), reverse=True)
            dropped.update(newest_first[cap:])
    return [item for i, item in enumerate(items) if i not in dropped], len(dropped)


def describe_labels(train: list[Label], held_out: list[Label]) -> dict[str, Any]:
    """``model_versions.labels_used``: counts by source and class, id and time ranges, what was held out."""
    def part(labels: list[Label]) -> dict[str, Any]:
        by_source: dict[str, dict[str, int]] = {}
        for label in labels:
            by_source.setdefault(label.source, {"spam": 0, "ham": 0})["spam" if label.label else "ham"] += 1
        return {
            "n": len(labels), "spam": sum(x.label for x in labels), "ham": sum(1 - x.label for x in labels),
            "by_source": by_source,
            "id_range": [min(x.id for x in labels), max(x.id for x in labels)] if labels else None,
            "time_range": [min(x.created_at for x in labels).isoformat(),
                           max(x.created_at for x in labels).isoformat()] if labels else None,
        }
    return {"train": part(train), "held_out": part(held_out)}


def _sample(examples: list[Example], limit: int) -> list[Example]:
    if not limit or len(examples) <= limit:
        return examples
    kept, _ = split_validation(examples, 1 - limit / len(examples), SAMPLE_SEED)
    return kept


@dataclass
class Corpora:
    """The base and evaluation corpora of ``[learning]``, parsed once and kept for the process."""

    settings: LearningSettings
    _cache: dict[str, list[Example]] = field(default_factory=dict)

    def base(self) -> list[Example]:
        return self._load("base", self.settings.base_corpus, "train", self.settings.base_corpus_max)

    def evaluation(self) -> list[Example]:
        return self._load("eval", self.settings.eval_corpus, "test", self.settings.eval_corpus_max)

    def describe(self) -> dict[str, Any]:
        return {"base_corpus": {"path": self.settings.base_corpus or str(CORPUS), "n": len(self.base())},
                "eval_corpus": {"path": self.settings.eval_corpus or str(CORPUS), "n": len(self.evaluation())}}

    def _load(self, role: str, configured: str, bundled_split: str, limit: int) -> list[Example]:
        if role not in self._cache:
            if configured.strip().lower() == "none":
                examples: list[Example] = []
            elif configured:
                examples = load_path(Path(configured))
            else:
                examples = load_path(CORPUS, split=bundled_split)
            self._cache[role] = [Example(f"{role}:{e.name}", e.message, e.label, e.split)
                                 for e in _sample(examples, limit)]
        return self._cache[role]
