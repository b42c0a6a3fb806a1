"""What a pipeline stage is.

A stage is a small object with a name and a ``process`` method that handles a batch of
messages claimed for it. It returns one ``Outcome`` per message; the worker turns outcomes
into state changes (advance, quarantine, retry, park), so no stage writes queue columns.

A stage must be idempotent: a crash after its side effect but before the worker records the
outcome runs it again for the same message. Stages that act on the outside world (IMAP
moves, drafts) therefore record what they did in their own table, keyed by message id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from daemon.db.tables import Message

# Every stage name that may appear in messages.stage, in flow order (``daemon.stages`` builds them).
KNOWN_STAGES: tuple[str, ...] = ("parse", "classify", "file", "draft")
FIRST_STAGE = KNOWN_STAGES[0]

OutcomeKind = Literal["next", "finish", "quarantine", "retry"]


class DependencyDown(Exception):
    """Raised by ``process`` when a service the stage needs (IMAP server, LLM endpoint) is unreachable.

    The messages are not at fault: they stay at the stage without an attempt or a claim counted,
    their leases are released, and the stage waits (its waiting reason reads "<message> since
    HH:MM") for ``pipeline.dependency_wait_seconds`` before it tries again, instead of parking mail
    because of an outage. Word the message for the admin: "IMAP server imap.example.com unreachable".

    ``outcomes`` may carry the results of messages the batch finished before the service went
    away, so their work is recorded rather than redone.
    """

    def __init__(self, message: str, outcomes: Mapping[int, Outcome] | None = None) -> None:
        super().__init__(message)
        self.outcomes: dict[int, Outcome] = dict(outcomes or {})


@dataclass(frozen=True)
class Outcome:
    kind: OutcomeKind
    reason: str | None = None

    @classmethod
    def next(cls) -> Outcome:
        """Done here; go on to the following stage."""
        return cls("next")

    @classmethod
    def finish(cls, reason: str | None = None) -> Outcome:
        """Done here and nothing after this applies (for example: spam gets no draft)."""
        return cls("finish", reason)

    @classmethod
    def quarantine(cls, reason: str) -> Outcome:
        """Bad input that retrying cannot fix; kept with its raw bytes for a person to look at."""
        return cls("quarantine", reason)

    @classmethod
    def retry(cls, reason: str) -> Outcome:
        """A transient failure; retried with backoff, parked after ``pipeline.max_attempts``."""
        return cls("retry", reason)


class Stage(Protocol):
    name: str
    batch_size: int

    def waiting_reason(self) -> str | None:
        """Why this stage cannot run right now (e.g. no active model), or None when it can.

        Messages then wait at this stage instead of being guessed at or failed.
        """
        ...

    def process(self, session: Session, messages: list[Message]) -> dict[int, Outcome]:
        """Handle a batch; return an outcome per message id. Runs in a worker thread.

        ``session`` is open without a transaction; commit your own writes. An exception fails
        the whole batch (each message is retried), so catch per-message errors yourself.
        """
        ...
