"""Model version directories stored in Postgres, so every daemon can load every version.

A version directory is stored file by file: ``model_artifacts`` lists its relative paths with a
SHA-256 each, and the bytes live once per content in ``model_blobs`` (in chunks of
``CHUNK_BYTES``). A version made by refreshing the token statistics shares its transformer
with the version it came from, so it costs the database a few MB instead of another copy of
the weights. The version's own checksum (``model_versions.sha256``) is the SHA-256 of its
manifest (sorted ``path sha256 size`` lines), so one value names the exact content.

A daemon without the directory extracts it into ``<cache>/<id>-<sha256[:12]>``: written to a
temporary directory first, every file's checksum verified, then renamed into place, so a
reader finds a complete directory or none.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from daemon.spam.tables import ModelArtifact, ModelBlob, ModelBlobChunk, ModelVersion

if TYPE_CHECKING:
    from daemon.config import Settings


def models_dir(settings: Settings) -> Path:
    """``state_dir/models``: where model versions trained here, or taken from Postgres, are kept."""
    return Path(settings.daemon.state_dir) / "models"

CHUNK_BYTES = 8 * 1024 * 1024


class ArtifactError(Exception):
    """A stored version is missing or does not match its checksum."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(directory: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            yield path.relative_to(directory).as_posix(), path


def manifest_sha256(entries: list[tuple[str, str, int]]) -> str:
    """The version checksum: SHA-256 over its sorted ``path sha256 size`` lines."""
    lines = "".join(f"{p}\t{s}\t{n}\n" for p, s, n in sorted(entries))
    return hashlib.sha256(lines.encode()).hexdigest()


def directory_manifest(directory: Path) -> list[tuple[str, str, int]]:
    """``(relative path, sha256, size)`` of every file under ``directory``."""
    return [(rel, file_sha256(path), path.stat().st_size) for rel, path in _files(directory)]


def store_version(session: Session, version_id: int, directory: Path) -> str:
    """Store ``directory`` as the artifacts of ``version_id`` (the caller commits); return its checksum.

    Blobs already stored (a shared transformer) are not written again.
    """
    entries = directory_manifest(directory)
    known = set(session.scalars(select(ModelBlob.sha256).where(ModelBlob.sha256.in_([s for _, s, _ in entries]))))
    for rel, sha, size in entries:
        if sha not in known:
            _store_blob(session, directory / rel, sha, size)
            known.add(sha)
    session.execute(delete(ModelArtifact).where(ModelArtifact.version_id == version_id))
    session.add_all(ModelArtifact(version_id=version_id, path=rel, sha256=sha, size=size) for rel, sha, size in entries)
    checksum = manifest_sha256(entries)
    row = session.get(ModelVersion, version_id)
    if row is None:
        raise KeyError(f"no model version {version_id}")
    row.sha256 = checksum
    session.flush()
    return checksum


def _store_blob(session: Session, path: Path, sha: str, size: int) -> None:
    # ON CONFLICT: another daemon may store the same transformer at the same moment.
    inserted = session.execute(insert(ModelBlob).values(sha256=sha, size=size).on_conflict_do_nothing()
                               .returning(ModelBlob.sha256)).first()
    if inserted is None:
        return
    with path.open("rb") as handle:
        for seq, chunk in enumerate(iter(lambda: handle.read(CHUNK_BYTES), b"")):
            # Core inserts: ORM objects would keep every chunk in the session until commit.
            session.execute(insert(ModelBlobChunk).values(sha256=sha, seq=seq, data=chunk))


def cache_path(cache_dir: Path, version: ModelVersion) -> Path:
    if not version.sha256:
        raise ArtifactError(f"model version {version.id} has no stored artifacts")
    return cache_dir / f"{version.id}-{version.sha256[:12]}"


CHUNKS_SQL = text("SELECT data FROM model_blob_chunks WHERE sha256 = :sha AND seq = :seq")


def extract_version(session: Session, version: ModelVersion, cache_dir: Path) -> Path:
    """The version's directory under ``cache_dir``, extracted from Postgres unless already there.

    Every file is checked against its stored SHA-256 and the manifest against the version's;
    a mismatch raises :class:`ArtifactError` and leaves nothing behind.
    """
    target = cache_path(cache_dir, version)
    if (target / "version.json").exists():
        return target
    entries = [(a.path, a.sha256, a.size) for a in
               session.scalars(select(ModelArtifact).where(ModelArtifact.version_id == version.id))]
    if not entries:
        raise ArtifactError(f"model version {version.id} has no stored artifacts")
    if manifest_sha256(entries) != version.sha256:
        raise ArtifactError(f"model version {version.id}: stored file list does not match its checksum")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".extract-{version.id}-", dir=cache_dir))
    try:
        for rel, sha, size in entries:
            out = work / rel
            if ".." in Path(rel).parts or Path(rel).is_absolute():
                raise ArtifactError(f"model version {version.id}: unsafe path {rel!r} in its artifacts")
            out.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            written = 0
            with out.open("wb") as handle:
                seq = 0
                while True:
                    chunk = session.execute(CHUNKS_SQL, {"sha": sha, "seq": seq}).scalar()
                    if chunk is None:
                        break
                    handle.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
                    seq += 1
            if digest.hexdigest() != sha or written != size:
                raise ArtifactError(f"model version {version.id}: {rel} does not match its checksum")
        try:
            os.rename(work, target)
        except OSError:  # another process extracted it first
            if not (target / "version.json").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
