"""Sender reputation: how often each From address and domain was ham or spam in the training data.

By default a sender can only lose credit here: an address or domain that sent spam before pushes a
message towards spam, an unknown or known-good one changes nothing. The other half, "mail from
someone the mailbox kept mail from is rarely spam" (SpamAssassin's TxRep), is true in the data (in
5-fold cross-validation on the shared corpus's train split, 2,821 of 3,319 ham came from an address
seen only as ham in the other folds, 3 of 1,498 spam from one ever seen as ham), but From is forged
freely: with it, forging a frequent correspondent let 248 of 398 test spam through
(docs/benchmarks.md). ``ham_side=True`` turns it on for mail whose From is authenticated upstream.

The reputation is one more input of the ensemble (``daemon/spam/model.py``), weighted like the
others on held-out scores. Keys are stored as truncated SHA-256 digests, so a model directory does
not list the mailbox's correspondents in plain text, and as JSON, so loading never executes code.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from daemon.mail.mime import ParsedMessage

FILE_NAME = "senders.json"
FEATURES = ("sender_address", "sender_domain")
MAX_COUNT = 100
"""Counts above this add nothing: one chatty mailing list must not outweigh the text models."""


def _digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:16]


def sender_keys(message: ParsedMessage) -> tuple[str | None, str | None]:
    """Digests of the lower-cased From address and domain; None where the message has none."""
    address = message.from_addr.strip().lower()
    domain = message.from_domain.strip()
    return (_digest("address", address) if "@" in address else None,
            _digest("domain", domain) if domain else None)


class SenderReputation:
    """Ham and spam counts per sender key; ``features`` turns them into smoothed log-odds."""

    def __init__(self, counts: dict[str, tuple[int, int]], ham_side: bool = False) -> None:
        self.counts = counts
        """Key digest -> (ham count, spam count)."""
        self.ham_side = ham_side
        """Also speak *for* senders known as ham. Off by default: From is trivially forged, and a spam
        forging a frequent correspondent would get that correspondent's credit (docs/benchmarks.md)."""

    @classmethod
    def fit(cls, messages: Iterable[ParsedMessage], labels: Iterable[int], ham_side: bool = False
            ) -> SenderReputation:
        counts: dict[str, list[int]] = {}
        for message, label in zip(messages, labels, strict=True):
            for key in sender_keys(message):
                if key is not None:
                    counts.setdefault(key, [0, 0])[1 if label else 0] += 1
        return cls({k: (h, s) for k, (h, s) in counts.items()}, ham_side)

    def _log_odds(self, key: str | None) -> float:
        if key is None:
            return 0.0
        ham, spam = self.counts.get(key, (0, 0))
        log_odds = math.log((min(ham, MAX_COUNT) + 1) / (min(spam, MAX_COUNT) + 1))
        return log_odds if self.ham_side else min(log_odds, 0.0)

    def features(self, messages: Sequence[ParsedMessage]) -> np.ndarray:
        """One row per message: ham-vs-spam log-odds of its address and of its domain (0 = unknown;
        without ``ham_side``, never above 0: a sender can only lose credit, never earn it)."""
        rows = [[self._log_odds(key) for key in sender_keys(m)] for m in messages]
        return np.asarray(rows, dtype=np.float64).reshape(len(messages), len(FEATURES))

    def save(self, directory: Path) -> None:
        data = {"features": list(FEATURES), "max_count": MAX_COUNT, "ham_side": self.ham_side,
                "counts": {k: list(v) for k, v in sorted(self.counts.items())}}
        (directory / FILE_NAME).write_text(json.dumps(data, separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, directory: Path) -> SenderReputation | None:
        """The version's reputation, or None for versions trained before it existed."""
        path = directory / FILE_NAME
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls({k: (int(v[0]), int(v[1])) for k, v in data["counts"].items()}, bool(data.get("ham_side", False)))
