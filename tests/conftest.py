"""Fixtures shared by the whole suite: the embedded Postgres, Dovecot, and the daemon as a process.

One PostgreSQL server per test session; each test gets a fresh database copied from a migrated
template (a copy takes milliseconds, a migration run does not).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from daemon.db import migrate
from daemon.db.embedded import embedded_url
from daemon.db.session import Database
from tests.helpers import DaemonProcess, write_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TEMPLATE_DB = "mailsense_template"


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{name}?{query}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of the session's embedded server, maintenance database."""
    data_dir = Path(tempfile.mkdtemp(prefix="mailsense-pg-"))
    data_dir.chmod(0o755)  # pgserver runs postgres as its own system user when we are root
    url = embedded_url(data_dir)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}"))
        conn.execute(text(f"CREATE DATABASE {TEMPLATE_DB}"))
    migrate.upgrade(_with_database(url, TEMPLATE_DB))
    admin.dispose()
    yield url


@pytest.fixture
def db_url(pg_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}"))
    yield _with_database(pg_url, name)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database.from_url(db_url)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    """The bundled MiniLM, loaded once per session for the KB and drafting tests."""
    from daemon.kb.embeddings import Embedder

    model = Embedder.from_setting("")
    model.embed(["warm up"])
    return model


@pytest.fixture(scope="session")
def dovecot() -> Iterator[object]:
    from tests.servers.dovecot import DovecotServer

    server = DovecotServer()
    server.start()
    yield server
    server.close()


@pytest.fixture
def mailbox_user(dovecot) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A fresh Dovecot user per test, so tests never see each other's mail."""
    user = f"u{uuid.uuid4().hex[:8]}"
    dovecot.set_password(user, "secret-" + user)
    yield user


@pytest.fixture
def state_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="mailsense-state-"))
    path.chmod(0o755)
    return path


@pytest.fixture
def daemon_factory(db_url: str, state_dir: Path, dovecot, mailbox_user: str) -> Iterator:  # type: ignore[no-untyped-def]
    """Start ``mailsense run`` as a real process against Dovecot and the test database."""
    started: list[DaemonProcess] = []

    def factory(**overrides: object) -> DaemonProcess:
        config = write_config(state_dir, db_url, dovecot, mailbox_user, **overrides)
        proc = DaemonProcess(config, env={"MAILSENSE_TEST_PASSWORD": dovecot.users[mailbox_user]})
        started.append(proc)
        return proc

    yield factory
    for proc in started:
        proc.kill()
