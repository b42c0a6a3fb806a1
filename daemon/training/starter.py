"""The starter spam model: a fresh install filters spam on day one.

Mailsense ships the public SpamAssassin corpus (``daemon/data/spamassassin-public-corpus.tar.gz``,
6,046 labelled messages from 2002-2003) and, on first set-up, trains a model version from its
``train`` split: token statistics on every message plus a one-epoch, 128-token fine-tune of the
transformer on a stratified sample of 800 (the ``test`` split stays unseen: scheduled retraining
uses it as the fixed evaluation corpus of its promotion gate, daemon/learning/gate.py), so it
finishes in minutes on 2 cores (measured in docs/benchmarks.md).
The result is cached under ``state_dir/models/starter-v1``, registered and activated; later
calls return the existing version. User corrections then drive retraining on the user's own
mail, which will replace it.

Several daemons may start at once against one database: a Postgres advisory lock makes exactly
one of them train while the others wait and then find the registered version.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from daemon.config import Settings
from daemon.cpu import available_cores
from daemon.db.locks import advisory_lock
from daemon.db.session import Database
from daemon.spam import registry
from daemon.spam.artifacts import ArtifactError, models_dir, store_version
from daemon.spam.tables import ModelVersion
from daemon.training.data import load_path
from daemon.training.train import TrainConfig, TrainResult, train_model

log = logging.getLogger(__name__)

STARTER_NAME = "starter-v1"
CORPUS = Path(__file__).resolve().parents[1] / "data" / "spamassassin-public-corpus.tar.gz"
_LOCK_KEY = "mailsense.spam.starter_model"


def starter_config() -> TrainConfig:
    """Chosen for a few minutes on 2 cores; the token statistics carry most of the accuracy.

    One core is left free: set-up runs next to the database and the daemon's own work, and two
    torch threads on two busy cores were measured several times slower than one. No sender
    reputation: who wrote to the corpus owner in 2002 says nothing about who writes to this mailbox.
    """
    return TrainConfig(epochs=1, max_length=128, transformer_max_train=800,
                       threads=max(1, available_cores() - 1), sender_reputation=False)


def ensure_starter_model(settings: Settings, db: Database,
                         on_step: Callable[[str], None] | None = None) -> int:
    """Return the id of the active spam model version, training and activating the starter if none is.

    Idempotent and safe to run from several processes at once.
    """
    say = on_step or (lambda msg: log.info("%s", msg))
    with advisory_lock(db.engine, _LOCK_KEY):  # training takes minutes: once, whoever asks first
        return _ensure_locked(settings, db, say)


def _ensure_locked(settings: Settings, db: Database, say: Callable[[str], None]) -> int:
    with db.session() as session, session.begin():
        active = registry.active_version(session)
        if active is not None:
            try:  # here, or stored in the database by the host that trained it
                registry.version_directory(session, active, models_dir(settings))
                return active.id
            except (FileNotFoundError, ArtifactError) as exc:
                log.warning("active spam model %d cannot be loaded (%s); installing the starter model", active.id, exc)

    target = models_dir(settings) / STARTER_NAME
    if not (target / "version.json").exists() or not (target / "thresholds.json").exists():
        result = _train_starter(target, say)
    else:
        say(f"using the cached starter model in {target}")
        result = _result_from_dir(target)
    with db.session() as session, session.begin():
        existing = session.scalars(select(ModelVersion).where(ModelVersion.path == str(target.resolve()))).first()
        version_id = existing.id if existing else registry.register(session, result)
        if existing is None or existing.sha256 is None:  # every daemon of the cluster can then load it
            store_version(session, version_id, target)
        registry.activate_version(session, version_id)
    say(f"spam model version {version_id} is active")
    return version_id


def _train_starter(target: Path, say: Callable[[str], None]) -> TrainResult:
    if not CORPUS.exists():
        raise FileNotFoundError(f"bundled corpus missing at {CORPUS}; reinstall Mailsense from its source tree")
    target.parent.mkdir(parents=True, exist_ok=True)
    say("training the starter spam model from the bundled public corpus (a few minutes, once)")
    examples = load_path(CORPUS, split="train")
    work = Path(tempfile.mkdtemp(prefix=".starter-", dir=target.parent))
    try:
        train_model(examples, work / "model", starter_config(), on_step=say)
        if target.exists():
            shutil.rmtree(target)
        (work / "model").rename(target)  # appears complete or not at all
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _result_from_dir(target)


def _result_from_dir(path: Path) -> TrainResult:
    import json

    from daemon.spam.model import Thresholds

    def read(name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((path / name).read_text())  # each file holds one JSON object
        return data

    info = read("version.json")
    return TrainResult(path=path, metrics=read("metrics.json"),
                       thresholds=Thresholds.from_json(read("thresholds.json")),
                       text_settings=read("text_settings.json"), base_model=info["base_model"], seconds=0.0)
