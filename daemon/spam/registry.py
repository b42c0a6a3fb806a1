"""The ``model_versions`` registry: register, activate and load the active spam model.

The daemon loads the active version at start (and again when the active id changes); commands
and the set-up script register what they train. Switching the active version is one
transaction, so readers see either the old or the new one, never none or two.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Unpack

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from daemon.spam.tables import ModelVersion

if TYPE_CHECKING:
    from daemon.spam.model import LoadOptions, SpamModel, Thresholds

KIND = "spam"


class TrainedVersion(Protocol):
    """What training hands over (``daemon.training.train.TrainResult``); the registry needs no more."""

    path: Path
    base_model: str
    metrics: dict[str, Any]
    thresholds: Thresholds
    text_settings: dict[str, Any]


def register(session: Session, result: TrainedVersion, activate: bool = False) -> int:
    """Insert a trained version as a candidate (the caller commits); with ``activate`` it becomes the active one."""
    row = ModelVersion(kind=KIND, path=str(result.path.resolve()), base_model=result.base_model,
                       metrics=result.metrics, thresholds=result.thresholds.to_json(),
                       text_settings=result.text_settings, active=False, status="candidate")
    session.add(row)
    session.flush()
    if activate:
        activate_version(session, row.id)
    return row.id


def activate_version(session: Session, version_id: int) -> None:
    """Make ``version_id`` the only active spam version (the caller commits); the one before is retired."""
    row = session.get(ModelVersion, version_id)
    if row is None or row.kind != KIND:
        raise KeyError(f"no spam model version {version_id}")
    session.execute(update(ModelVersion).where(ModelVersion.kind == KIND, ModelVersion.active,
                                               ModelVersion.id != version_id)
                    .values(active=False, status="retired"))
    session.flush()  # the partial unique index allows one active row: clear the old one first
    row.active = True
    row.status = "active"
    row.activated_at = session.scalar(select(func.now()))
    session.flush()


def reject_version(session: Session, version_id: int) -> None:
    """Keep ``version_id`` as ``rejected`` (the gate said no); it stays listed with its metrics."""
    row = session.get(ModelVersion, version_id)
    if row is None or row.kind != KIND:
        raise KeyError(f"no spam model version {version_id}")
    if row.active:
        raise ValueError(f"spam model version {version_id} is active; activate another one first")
    row.status = "rejected"
    session.flush()


def version_directory(session: Session, row: ModelVersion, cache_dir: Path | None = None) -> Path:
    """Where ``row``'s files are on this host: its recorded path, else extracted from Postgres into ``cache_dir``.

    Another daemon's state directory is not here; the artifacts stored in the database are
    (``daemon/spam/artifacts.py``), checksums verified on extraction.
    """
    from daemon.spam import artifacts

    path = Path(row.path)
    if (path / "version.json").exists():
        return path
    if cache_dir is not None and row.sha256:
        return artifacts.extract_version(session, row, cache_dir)
    raise FileNotFoundError(f"spam model version {row.id} points to {path}, which does not exist here"
                            + ("" if row.sha256 else ", and its files are not stored in the database"))


def active_version(session: Session) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.kind == KIND, ModelVersion.active)).first()


def load_active(session: Session, cache_dir: Path | None = None,
                **load_options: Unpack[LoadOptions]) -> tuple[int, SpamModel] | None:
    """The active version's id and loaded model, or None when no version is active yet.

    A directory that is neither here nor stored in the database raises: an active version that
    cannot be loaded is an operator problem to report, not a reason to classify with nothing.
    """
    from daemon.spam.model import SpamModel

    row = active_version(session)
    if row is None:
        return None
    return row.id, SpamModel.load(version_directory(session, row, cache_dir), **load_options)


def load_configured(
    session: Session, model_dir: str = "", cache_dir: Path | None = None, **load_options: Unpack[LoadOptions]
) -> tuple[int | None, SpamModel] | None:
    """What the daemon should classify with: ``spam.model_dir`` if set, else the active version.

    With ``model_dir`` the id is that of a registered version at the same path, or None if the
    directory was never registered (the verdict is then stored without a version id).
    """
    from daemon.spam.model import SpamModel

    if not model_dir:
        return load_active(session, cache_dir, **load_options)
    path = Path(model_dir).resolve()
    row = session.scalars(select(ModelVersion).where(ModelVersion.kind == KIND, ModelVersion.path == str(path))
                          ).first()
    return (row.id if row else None), SpamModel.load(path, **load_options)


VERDICT_COUNTS_SQL = text("SELECT spam_verdict, count(*) FROM messages WHERE spam_verdict IS NOT NULL GROUP BY 1")


def verdict_counts(session: Session) -> dict[str, int]:
    """Messages per spam verdict so far (for ``mailsense status``)."""
    return {str(verdict): int(n) for verdict, n in session.execute(VERDICT_COUNTS_SQL).all()}
