"""Exponential backoff with jitter, and a logger that reports an outage once instead of per retry."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base: float = 1.0
    cap: float = 300.0
    attempt: int = 0

    def next_delay(self) -> float:
        """Full jitter: spreads reconnects of many watchers after a shared outage."""
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class OutageLog:
    """Log the first failure, a reminder every ``remind_every`` seconds, and the recovery."""

    log: logging.Logger
    what: str
    remind_every: float = 600.0
    failures: int = 0
    _last_kind: str = ""
    _last_logged: float = field(default=0.0)

    def failed(self, kind: str, detail: str, retry_in: float) -> None:
        self.failures += 1
        now = time.monotonic()
        if kind != self._last_kind or now - self._last_logged >= self.remind_every:
            suffix = f" (failing for {self.failures} attempts)" if self.failures > 1 else ""
            self.log.error("%s: %s%s; retrying in %.0fs", self.what, detail, suffix, retry_in)
            self._last_kind, self._last_logged = kind, now
        else:
            self.log.debug("%s: %s; retry %d in %.0fs", self.what, detail, self.failures, retry_in)

    def recovered(self) -> None:
        if self.failures:
            self.log.info("%s: connected again after %d failed attempts", self.what, self.failures)
        self.failures, self._last_kind = 0, ""
