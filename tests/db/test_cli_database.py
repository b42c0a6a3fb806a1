"""Which database a command opens, and what it may do to it.

An admin shell on a service install runs ``mailsense status`` as another user or from another
directory; it must find the service's database or say where it looked, never start a second,
empty one. Read-only commands never migrate, and a database that cannot be reached is one line.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from daemon.config import default_state_dir, load_settings
from daemon.db import migrate
from daemon.db.embedded import DatabaseMissing, embedded_url, to_libpq_url, update_vector_extension
from daemon.errors import CommandError
from tests.conftest import _with_database

READ_ONLY = (["status"], ["drafts", "list"], ["kb", "list"], ["kb", "search", "refund"])


def mailsense(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args], env={**os.environ, "MAILSENSE_CONFIG": "", **env},
        capture_output=True, text=True, timeout=240, cwd=cwd,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("mailsense:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.e2e  # runs `python -m daemon.cli`
def test_read_only_commands_refuse_to_create_a_database(state_dir: Path) -> None:
    env = {"MAILSENSE_DAEMON__STATE_DIR": str(state_dir)}
    for command in READ_ONLY:
        result = mailsense(*command, env=env)
        assert result.returncode == 66, (command, result.stderr)
        line = one_error_line(result)
        assert str(state_dir / "postgres") in line and "mailsense db upgrade" in line
        assert not (state_dir / "postgres").exists(), command

    assert mailsense("db", "upgrade", env=env).returncode == 0
    result = mailsense("status", env=env)
    assert result.returncode == 0, result.stderr
    assert f"database: embedded, {state_dir / 'postgres'} (state_dir from MAILSENSE_DAEMON__STATE_DIR)" in (
        result.stdout
    )


@pytest.fixture
def empty_database(pg_url: str) -> str:
    name = f"e_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return _with_database(pg_url, name)


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


@pytest.mark.e2e  # runs `python -m daemon.cli`
def test_read_only_commands_do_not_migrate_a_database_that_is_behind(empty_database: str, state_dir: Path) -> None:
    env = {"MAILSENSE_DATABASE__URL": empty_database, "MAILSENSE_DAEMON__STATE_DIR": str(state_dir)}
    result = mailsense("status", env=env)
    assert result.returncode == 65
    assert "no Mailsense schema" in one_error_line(result) and "mailsense db upgrade" in result.stderr
    assert _revision(empty_database) is None

    migrate.upgrade(empty_database, "0002_spam")
    for command in READ_ONLY:
        result = mailsense(*command, env=env)
        assert result.returncode == 65, (command, result.stderr)
        assert "at revision 0002_spam" in one_error_line(result)
    assert _revision(empty_database) == "0002_spam"

    assert mailsense("db", "upgrade", env=env).returncode == 0
    assert mailsense("status", env=env).returncode == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.e2e  # runs `python -m daemon.cli`
def test_an_unreachable_database_is_one_line_without_the_password(state_dir: Path) -> None:
    url = f"postgresql://mailsense:hunter2-secret@127.0.0.1:{_closed_port()}/mailsense"
    env = {"MAILSENSE_DATABASE__URL": url, "MAILSENSE_DAEMON__STATE_DIR": str(state_dir)}
    for command in (["status"], ["db", "upgrade"]):
        result = mailsense(*command, env=env)
        assert result.returncode == 75, result.stderr
        line = one_error_line(result)
        assert "cannot reach the database" in line and "127.0.0.1" in line
        assert "hunter2" not in result.stderr + result.stdout


def test_state_dir_is_where_the_service_keeps_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/x"}) == (Path("/var/lib/x"), "$STATE_DIRECTORY")
    service_dir = tmp_path / "service"
    monkeypatch.setattr("daemon.config.SERVICE_STATE_DIR", service_dir)
    assert default_state_dir({})[0] == Path("state")
    service_dir.mkdir()
    assert default_state_dir({}) == (service_dir, "the service's state directory")

    config = tmp_path / "etc" / "mailsense.toml"
    config.parent.mkdir()
    config.write_text('[daemon]\nstate_dir = "data"\n')
    settings = load_settings(config, environ={})
    assert settings.daemon.state_dir == tmp_path / "etc" / "data"
    assert settings.state_dir_source == f"daemon.state_dir in {config}"
    settings = load_settings(tmp_path / "etc" / "mailsense.toml", environ={"STATE_DIRECTORY": "/srv/ms"})
    assert settings.daemon.state_dir == tmp_path / "etc" / "data"  # the file wins over the unit's default


def test_an_older_vector_extension_is_updated(db_url: str) -> None:
    dsn = to_libpq_url(db_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        latest = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
        # An older install, as a state directory of an earlier Mailsense has it.
        conn.execute("UPDATE pg_extension SET extversion = '0.8.5' WHERE extname = 'vector'")
    update_vector_extension(db_url)
    with psycopg.connect(dsn) as conn:
        installed = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        distance = conn.execute("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetchone()
    assert latest is not None and installed == latest
    assert distance == (1.0,)


def test_a_missing_database_is_not_created_by_embedded_url(state_dir: Path) -> None:
    with pytest.raises(DatabaseMissing):
        embedded_url(state_dir, create=False)
    assert not (state_dir / "postgres").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can meet a data directory of another user")
def test_root_does_not_take_over_a_service_users_database(state_dir: Path) -> None:
    data_dir = state_dir / "postgres"
    data_dir.mkdir()
    (data_dir / "PG_VERSION").write_text("18\n")
    shutil.chown(data_dir, "nobody")
    with pytest.raises(CommandError, match="belongs to user nobody: run this command as that user"):
        embedded_url(state_dir, create=False)
    assert data_dir.owner() == "nobody"
