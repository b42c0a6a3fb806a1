"""Fixtures shared by the whole suite (Postgres, Dovecot, the daemon as a process), and the test tiers.

Every test has exactly one tier marker; ``.venv/bin/python -m pytest -m unit`` runs one tier:

- ``unit``: pure logic, no servers, fast (``-m unit`` takes seconds);
- ``integration``: a real PostgreSQL (the server or its binaries) and/or Dovecot, no daemon process;
- ``e2e``: runs the daemon (``mailsense run``) or another ``mailsense`` command as a process;
- ``training``: fine-tunes a model or loads the local LLM (many seconds of CPU each).

``-m "not training"`` is the everyday run, ``-m "unit or integration"`` the quick one. The tier comes
from the fixtures a test uses (``pytest_collection_modifyitems`` below): ``tiny_model`` -> training,
``daemon_factory`` -> e2e, ``pg_url``/``db_url``/``db``/``dovecot`` -> integration, none -> unit. A test
marks its tier only where its fixtures do not show it, e.g. ``@pytest.mark.e2e`` on a test that runs
``python -m daemon.cli`` itself. Collection fails on a test with two tiers or a tier below what its
fixtures need, and a unit or integration test that starts a ``mailsense`` command fails.

One PostgreSQL server per test session; each test gets a fresh database copied from a migrated
template (a copy takes milliseconds, a migration run does not).
"""

from __future__ import annotations

import os
import subprocess
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

TIERS = ("unit", "integration", "e2e", "training")  # cheapest first
TIER_OF_FIXTURE = {
    "tiny_model": "training",
    "daemon_factory": "e2e",
    "pg_url": "integration",
    "db_url": "integration",
    "db": "integration",
    "dovecot": "integration",
}


def _tier_from_fixtures(item: pytest.Item) -> str:
    """The most expensive tier among the fixtures the test uses (their dependencies included)."""
    used = getattr(item, "fixturenames", ())
    return max((tier for name, tier in TIER_OF_FIXTURE.items() if name in used), key=TIERS.index, default="unit")


def _marked_tiers(item: pytest.Item) -> list[str]:
    return sorted({mark.name for mark in item.iter_markers() if mark.name in TIERS}, key=TIERS.index)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = []
    for item in items:
        needed = _tier_from_fixtures(item)
        marked = _marked_tiers(item)
        if not marked:
            item.add_marker(needed)
        elif len(marked) > 1:
            problems.append(f"{item.nodeid}: marked with several tiers {marked}")
        elif TIERS.index(marked[0]) < TIERS.index(needed):
            problems.append(f"{item.nodeid}: marked {marked[0]}, but its fixtures make it {needed}")
    if problems:
        raise pytest.UsageError("each test needs exactly one tier (see tests/conftest.py):\n  " + "\n  ".join(problems))


@pytest.fixture(autouse=True)
def _tier_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail a unit or integration test that starts a ``mailsense`` command: it belongs to e2e."""
    [tier] = _marked_tiers(request.node)
    if tier not in ("unit", "integration"):
        return
    popen_init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen[bytes], args: object, *rest: object, **kwargs: object) -> None:
        argv = [args] if isinstance(args, str | bytes | os.PathLike) else list(args)  # type: ignore[call-overload]
        if "daemon.cli" in argv or any(os.path.basename(str(arg)) == "mailsense" for arg in argv[:1]):
            raise AssertionError(f"a {tier} test ran {argv}: mark it @pytest.mark.e2e")
        popen_init(self, args, *rest, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


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
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spam model version trained for 1 epoch on 48 generated messages (about 20 s on 2 cores)."""
    from daemon.training.train import TrainConfig, train_model
    from tests.training.samples import tiny_model_training_set

    out = tmp_path_factory.mktemp("tiny-model") / "model"
    train_model(tiny_model_training_set(), out,
                TrainConfig(epochs=1, max_length=64, batch_size=8, learning_rate=2e-4, val_fraction=0.25,
                            progress=False))
    return out


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
