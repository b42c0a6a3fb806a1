"""Does this database really compute vector distances? Asked at ``mailsense setup`` and at daemon start.

A pgvector compiled for a newer CPU than the one it runs on does not fail politely: the backend
dies with ``SIGILL`` on the first ``<=>`` and PostgreSQL restarts every connection, so the daemon
would crash-loop on its first knowledge-base query. One query that exercises the distance
functions and an HNSW build, in a connection of its own, turns that into one clear line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg

from daemon.errors import CommandError, DatabaseUnreachable

log = logging.getLogger(__name__)

DIMENSIONS = 384  # the size of the knowledge base's embeddings: the code paths the product uses
WIDE_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f")


class VectorOperationsFailed(CommandError):
    """Vector operations fail on the configured database; restarting will not help."""

    exit_code = 69  # EX_UNAVAILABLE


CHECK_SQL = f"""
CREATE TEMP TABLE mailsense_vector_check (id int, e vector({DIMENSIONS})) ON COMMIT DROP;
INSERT INTO mailsense_vector_check
SELECT i, (SELECT array_agg(sin(i * j)::real) FROM generate_series(1, {DIMENSIONS}) j)::vector
  FROM generate_series(1, 64) i;
CREATE INDEX ON mailsense_vector_check USING hnsw (e vector_cosine_ops);
SET LOCAL enable_seqscan = off;
"""
NEAREST_SQL = (
    "SELECT id, e <=> (SELECT e FROM mailsense_vector_check WHERE id = 7) AS d, "
    "e <-> (SELECT e FROM mailsense_vector_check WHERE id = 7) AS l2 "
    "FROM mailsense_vector_check ORDER BY e <=> (SELECT e FROM mailsense_vector_check WHERE id = 7) LIMIT 1"
)


def missing_cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The wide-register features a prebuilt pgvector may assume and this CPU lacks ([] if unknown)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    return [feature for feature in WIDE_FEATURES if flags and feature not in flags]


def check_vector_operations(url: str, *, embedded: bool) -> None:
    """Run a distance query and an HNSW build; raise ``VectorOperationsFailed`` with the reason and the fix."""
    from daemon.db.embedded import to_libpq_url

    try:
        conn = psycopg.connect(to_libpq_url(url), connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseUnreachable(f"cannot reach the database: {_first_line(exc)}; check database.url") from None
    try:
        with conn, conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(CHECK_SQL)
            row = conn.execute(NEAREST_SQL).fetchone()
    except psycopg.OperationalError as exc:
        raise VectorOperationsFailed(_explain(_first_line(exc), crashed=True, embedded=embedded)) from None
    except psycopg.Error as exc:
        raise VectorOperationsFailed(_explain(_first_line(exc), crashed=False, embedded=embedded)) from None
    if row is None or row[0] != 7 or abs(row[1]) > 1e-6 or abs(row[2]) > 1e-4:
        raise VectorOperationsFailed(
            _explain(f"a nearest-neighbour query returned {row!r} instead of the query row", False, embedded)
        )
    log.debug("vector operations work (%d dimensions, HNSW)", DIMENSIONS)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _explain(what: str, crashed: bool, embedded: bool) -> str:
    parts = [f"vector operations fail on this database ({what})"]
    missing = missing_cpu_features()
    if crashed and missing:
        parts.append(
            f"the server likely crashed on an instruction this CPU lacks ({', '.join(missing)} missing)"
        )
    if embedded:
        parts.append(
            "rebuild the embedded pgvector for this CPU with `mailsense db build-pgvector`, "
            "or set database.url to an external PostgreSQL with pgvector 0.8 or newer"
        )
    else:
        parts.append("install pgvector 0.8 or newer on that server (CREATE EXTENSION vector), or fix database.url")
    return "; ".join(parts)
