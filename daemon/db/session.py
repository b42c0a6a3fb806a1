"""Engine and session factory.

Sessions are short and explicit (``with db.session() as s, s.begin():``): every commit is a
point a crash can resume from, so we keep them deliberate rather than hidden in a scope.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from daemon.config import Settings
from daemon.db.embedded import embedded_url, to_sqlalchemy_url, update_vector_extension
from daemon.db.vector_check import check_vector_operations
from daemon.errors import CommandError, DatabaseUnreachable


class SchemaNotCurrent(CommandError):
    """The schema is older (or newer) than this Mailsense; only ``mailsense db upgrade`` changes it."""

    exit_code = 65  # EX_DATAERR


@dataclass
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    embedded: bool = False

    @classmethod
    def open(cls, settings: Settings, *, writable: bool) -> Database:
        """The one way commands and the daemon connect.

        ``writable`` commands may create the embedded database and apply migrations, after checking
        that vector operations work (see ``vector_check``); the others
        (status, listings, classify) never do: they refuse a missing database and a schema that
        is behind, so running them as the wrong user or in the wrong directory changes nothing.
        """
        from daemon.db import migrate

        url = settings.database_url()
        embedded = not url
        try:
            if embedded:
                url = embedded_url(settings.daemon.state_dir, create=writable)
            if writable:
                # Vectors first: a pgvector this CPU cannot run crashes the migration's CREATE EXTENSION
                # too, and that must read as what it is, not as an unreachable database.
                check_vector_operations(url, embedded=embedded)
                if embedded:
                    update_vector_extension(url)
                migrate.upgrade(url)
            database = cls.from_url(url, pool_size=settings.database.pool_size)
            if not writable:
                _require_current_schema(database.engine, url)
        except (sa_exc.OperationalError, psycopg.OperationalError) as exc:
            where = make_url(to_sqlalchemy_url(url)).render_as_string(hide_password=True) if url else "embedded"
            reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["no answer"])[0]
            raise DatabaseUnreachable(
                f"cannot reach the database {where}: {reason}; check database.url and that PostgreSQL is running"
            ) from None
        database.embedded = embedded
        return database

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
        def _set_timeouts(dbapi_conn: psycopg.Connection[Any], _record: ConnectionPoolEntry) -> None:
            # A stuck lock must surface as an error we retry, never as a daemon hung forever.
            with dbapi_conn.cursor() as cur:
                cur.execute("SET lock_timeout = '30s'; SET idle_in_transaction_session_timeout = '10min'")
            dbapi_conn.commit()

        return cls(engine=engine, sessions=sessionmaker(engine, expire_on_commit=False))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    @property
    def url(self) -> str:
        """The URL with its password, for libraries that need one (never log it)."""
        return self.engine.url.render_as_string(hide_password=False)

    def dispose(self) -> None:
        self.engine.dispose()


def _require_current_schema(engine: Engine, url: str) -> None:
    from daemon.db import migrate

    try:
        current = migrate.current_revision(engine)
        head = migrate.head_revision(url)
    except BaseException:
        engine.dispose()
        raise
    if current != head:
        engine.dispose()
        state = f"at revision {current}" if current else "empty (no Mailsense schema)"
        raise SchemaNotCurrent(
            f"the database is {state} and this Mailsense needs {head}: run `mailsense db upgrade` "
            "(the daemon also upgrades it at start)"
        )
