"""Labelled mail in the database for the retraining tests: stored messages plus ``spam_labels`` rows."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

from daemon.db.session import Database
from daemon.db.tables import Account
from daemon.spam import registry
from daemon.training.starter import _result_from_dir
from tests.training.samples import make_message

START = datetime(2026, 11, 1, tzinfo=UTC)


def add_labelled(db: Database, n: int, seed: int, minutes_from: int = 0, source: str = "user_move",
                 account: str = "test") -> list[tuple[int, int]]:
    """``n`` generated messages (alternating ham, spam), stored and labelled one minute apart.

    Returns ``(message id, label)`` pairs, oldest first.
    """
    from daemon.ingest.store import store_message

    rng = random.Random(seed)
    out: list[tuple[int, int]] = []
    with db.session() as session, session.begin():
        account_row = session.query(Account).filter_by(name=account).first()
        if account_row is None:
            account_row = Account(name=account)
            session.add(account_row)
            session.flush()
        for i in range(n):
            spam = i % 2 == 1
            _, message_id = store_message(session, account_id=account_row.id, raw=make_message(spam, rng),
                                          source="import", first_stage="done")
            label(session, message_id, spam, source, START + timedelta(minutes=minutes_from + i))
            out.append((message_id, int(spam)))
    return out


def label(session, message_id: int, spam: bool, source: str, at: datetime) -> None:  # type: ignore[no-untyped-def]
    session.execute(text("INSERT INTO spam_labels (message_id, label, source, created_at) VALUES (:m, :l, :s, :t)"),
                    {"m": message_id, "l": "spam" if spam else "ham", "s": source, "t": at})


def activate(db: Database, model_dir: Path) -> int:
    with db.session() as session, session.begin():
        return registry.register(session, _result_from_dir(model_dir), activate=True)


def write_corpus(root: Path, n: int, seed: int) -> Path:
    """A ham/ + spam/ folder of ``n`` generated messages (an evaluation or base corpus)."""
    rng = random.Random(seed)
    for i in range(n):
        spam = i % 2 == 1
        folder = root / ("spam" if spam else "ham")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.eml").write_bytes(make_message(spam, rng))
    return root
