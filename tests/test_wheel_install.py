"""Mailsense installed as a package (a wheel, not the source tree) can migrate its database.

The wheel is built from a copy of the working tree (so no build/ or egg-info lands in the
repository) and installed into a fresh venv whose only extra is a .pth file pointing at this
interpreter's site-packages: the dependencies are reused, not reinstalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from daemon.db import migrate

REPO = Path(__file__).resolve().parents[1]
# What the build reads; optional files are copied when they exist.
BUILD_INPUTS = ("pyproject.toml", "README.md", "daemon", "migrations")
OPTIONAL_INPUTS = ("setup.py", "setup.cfg", "MANIFEST.in", "LICENSE", "LICENSE.txt", "LICENSE.md")
NO_ACCOUNTS = "no accounts seen yet"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without Mailsense settings or PYTHONPATH, so nothing points back at the repository."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILSENSE_") and k != "PYTHONPATH"}
    env.update(extra)
    return env


def _copy_sources(dest: Path) -> Path:
    dest.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in BUILD_INPUTS + OPTIONAL_INPUTS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    return dest


def _fresh_venv(root: Path) -> Path:
    """A venv without pip whose site-packages also sees ours through a .pth file; returns its python."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    python = root / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).strip()
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (Path(purelib) / "mailsense-test-deps.pth").write_text("".join(f"{path}\n" for path in ours))
    return python


def _pip_install(python: Path, *args: str, cwd: Path) -> None:
    # --ignore-installed: the mailsense seen through the .pth (our editable install) is neither
    # uninstalled nor taken as already satisfying the requirement.
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--ignore-installed",
          "--no-index", *args], cwd=cwd)


def _where_installed(python: Path, cwd: Path) -> tuple[Path, Path, list[Path]]:
    """daemon's __init__.py, the migrations directory and the package's own locations, as the venv sees them."""
    script = (
        "import daemon, daemon.db.migrate as m\n"
        "print(daemon.__file__)\n"
        "print(m.migrations_dir())\n"
        "print(*m._package_dirs(), sep='\\n')\n"
    )
    lines = _run([str(python), "-c", script], cwd=cwd, env=_clean_env()).splitlines()
    return Path(lines[0]), Path(lines[1]), [Path(line) for line in lines[2:] if line]


def _stop_postgres(data_dir: Path, timeout: float = 60) -> None:
    """Stop an embedded server left running in ``data_dir`` (SIGTERM = smart shutdown) and wait for it."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGTERM)
    except (ValueError, IndexError, ProcessLookupError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def scratch() -> Iterator[Path]:
    # mkdtemp + 0755: the embedded server may run postgres as another user when we are root.
    path = Path(tempfile.mkdtemp(prefix="mailsense-wheel-"))
    path.chmod(0o755)
    yield path
    _stop_postgres(path / "run" / "state" / "postgres")
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.e2e  # runs the installed `mailsense` command
@pytest.mark.timeout(900)
def test_wheel_install_migrates_and_reports_status(scratch: Path) -> None:
    src = _copy_sources(scratch / "src")
    dist = scratch / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist),
          "."], cwd=src)
    (wheel,) = dist.glob("mailsense-*.whl")

    # The wheel holds every module of the source tree and the whole Alembic directory.
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(src).as_posix() for p in (src / "daemon").rglob("*.py")}
    migrations = [p for p in (src / "migrations").rglob("*") if p.is_file()]
    expected |= {"daemon/migrations/" + p.relative_to(src / "migrations").as_posix() for p in migrations}
    expected |= {p.relative_to(src).as_posix() for p in (src / "daemon" / "db" / "vendor").glob("*.tar.gz")}
    expected.add("daemon/data/demo.mbox")
    web = src / "daemon" / "web"  # the review page's templates and stylesheet
    expected |= {p.relative_to(src).as_posix() for p in [*web.glob("templates/*.html"), *web.glob("static/*.css")]}
    assert {"daemon/migrations/env.py", "daemon/migrations/script.py.mako"} <= expected
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"
    assert not [n for n in names if n.startswith("migrations/")], "migrations/ must not be a top-level package"

    python = _fresh_venv(scratch / "venv")
    _pip_install(python, str(wheel), cwd=scratch)
    run_dir = scratch / "run"
    run_dir.mkdir()
    run_dir.chmod(0o755)

    # The installed copy is used, not the source tree.
    venv = (scratch / "venv").resolve()
    daemon_init, found, package_dirs = _where_installed(python, run_dir)
    assert daemon_init.is_relative_to(venv), daemon_init
    assert found == daemon_init.parent / "migrations", found
    assert found in package_dirs
    assert sorted(p.name for p in (found / "versions").glob("*.py")) == sorted(
        p.name for p in (REPO / "migrations" / "versions").glob("*.py")
    )

    head = ScriptDirectory(str(REPO / "migrations")).get_current_head()
    assert head
    # An empty config file keeps a machine-wide /etc/mailsense/mailsense.toml out of the test.
    config = run_dir / "mailsense.toml"
    config.write_text("")
    env = _clean_env(
        MAILSENSE_CONFIG=str(config), MAILSENSE_DAEMON__STATE_DIR=str(run_dir / "state"), HF_HUB_OFFLINE="1"
    )
    mailsense = str(scratch / "venv" / "bin" / "mailsense")
    upgraded = _run([mailsense, "db", "upgrade"], cwd=run_dir, env=env, timeout=600)
    assert f"database at revision {head}" in upgraded, upgraded
    status = _run([mailsense, "status"], cwd=run_dir, env=env)
    assert NO_ACCOUNTS in status, status


@pytest.mark.e2e  # runs the installed `mailsense` command
@pytest.mark.timeout(300)
def test_editable_install_finds_migrations(scratch: Path) -> None:
    src = _copy_sources(scratch / "src")
    python = _fresh_venv(scratch / "venv")
    _pip_install(python, "--no-build-isolation", "-e", str(src), cwd=scratch)
    elsewhere = scratch / "elsewhere"
    elsewhere.mkdir()
    daemon_init, found, _ = _where_installed(python, elsewhere)
    assert daemon_init == src.resolve() / "daemon" / "__init__.py"
    # setuptools' editable finder cannot import the mapped daemon.migrations (a namespace package
    # under a regular one), so an editable install uses the checkout's own migrations/.
    assert found == src.resolve() / "migrations"


def test_missing_migrations_are_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(migrate, "SOURCE_DIR", tmp_path / "migrations")
    monkeypatch.setattr(migrate, "_package_dirs", lambda: [])
    with pytest.raises(RuntimeError, match=r"database migrations not found.*reinstall Mailsense"):
        migrate.alembic_config("postgresql://x/y")
