"""Alembic, driven from our own CLI so ``mailsense db upgrade`` needs no alembic.ini in the cwd."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

PACKAGE = "daemon.migrations"  # pyproject.toml maps it onto the top-level migrations/ directory
SOURCE_DIR = Path(__file__).resolve().parents[2] / "migrations"  # a source checkout run without installing


def _is_migrations_dir(path: Path) -> bool:
    return (path / "env.py").is_file() and (path / "versions").is_dir()


def _package_dirs() -> list[Path]:
    """Where an installed wheel's ``daemon.migrations`` lives.

    Empty in a source checkout, and in an editable install too: setuptools' editable finder cannot
    import the mapped package (it has no __init__.py), so those use SOURCE_DIR.
    """
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except ImportError:
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p).resolve() for p in spec.submodule_search_locations]


def migrations_dir() -> Path:
    """The Alembic script directory: the installed package's copy first, then the source checkout's."""
    candidates = [*_package_dirs(), SOURCE_DIR]
    for path in candidates:
        if _is_migrations_dir(path):
            return path
    tried = ", ".join(dict.fromkeys(str(p) for p in candidates))
    raise RuntimeError(
        f"database migrations not found (looked for env.py and versions/ in: {tried}); "
        "reinstall Mailsense (pip install . or pip install -e . from its source tree)"
    )


def __getattr__(name: str) -> Path:
    # MIGRATIONS_DIR is looked up on use, so importing this module never fails for want of migrations.
    if name == "MIGRATIONS_DIR":
        return migrations_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()
