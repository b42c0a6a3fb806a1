"""Engine and session factory.

Sessions are short and explicit (``with db.session() as s, s.begin():``): every commit is a
point a crash can resume from, so we keep them deliberate rather than hidden in a scope.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from daemon.config import Settings
from daemon.db.embedded import embedded_url, to_sqlalchemy_url


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    @classmethod
    def from_url(cls, url: str, pool_size: int = 5) -> Database:
        engine = create_engine(
            to_sqlalchemy_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 10, "application_name": "mailsense"},
        )

        @event.listens_for(engine, "connect")
        def _set_timeouts(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # A stuck lock must surface as an error we retry, never as a daemon hung forever.
            with dbapi_conn.cursor() as cur:
                cur.execute("SET lock_timeout = '30s'; SET idle_in_transaction_session_timeout = '10min'")
            dbapi_conn.commit()

        return cls(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        url = settings.database_url() or embedded_url(settings.daemon.state_dir)
        return cls.from_url(url, pool_size=settings.database.pool_size)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
