"""The embedded PostgreSQL 18 + pgvector used when no database URL is configured.

``pgserver`` starts one server per data directory and shares it between processes, so
``mailsense run`` and ``mailsense status`` started side by side talk to the same server.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def embedded_url(state_dir: Path) -> str:
    """Start (or join) the embedded server under ``state_dir/postgres`` and return its SQLAlchemy URL."""
    import pgserver  # imported late: it is heavy and not needed with an external database

    data_dir = (state_dir / "postgres").resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    first = not (data_dir / "PG_VERSION").exists()
    if first:
        log.info("creating the embedded PostgreSQL in %s (first start takes a few seconds)", data_dir)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    return to_sqlalchemy_url(server.get_uri())


def to_sqlalchemy_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs from users and tools; we always drive them with psycopg 3."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url
