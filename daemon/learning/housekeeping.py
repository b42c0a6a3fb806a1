"""Housekeeping: raw-mail retention, files of old model versions, leftovers, and the KB sync of folders.

Conservative by construction:

* raw bytes are dropped only for messages that are ``done``, older than ``raw_retention_days``,
  carry no label (a label may want the message re-read one day) and have no draft still
  waiting for a person; parsed fields, verdicts and labels stay. Off (0) by default.
* the files of ``rejected`` and ``retired`` versions older than ``version_retention_days`` are
  deleted (their rows, metrics and gate figures stay), except the newest few retired versions,
  which ``mailsense models rollback`` may want; a stored file still used by another version is kept.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.learning.jobs import HOUSEKEEPING_LOCK, JobResult, run_job
from daemon.spam.artifacts import models_dir

KEEP_RETIRED = 3
"""Retired versions whose files are kept whatever their age: the rollback targets."""
LEFTOVER_SECONDS = 24 * 3600

DROP_RAW_SQL = text(
    """
    UPDATE messages m SET raw = ''::bytea
     WHERE m.stage = 'done' AND octet_length(m.raw) > 0
       AND m.received_at < now() - make_interval(days => :days)
       AND NOT EXISTS (SELECT 1 FROM spam_labels l WHERE l.message_id = m.id)
       AND NOT EXISTS (SELECT 1 FROM drafts d WHERE d.message_id = m.id AND d.status IN ('pending', 'needs_human',
                                                                                         'approved'))
    """
)

OLD_VERSIONS_SQL = text(
    """
    SELECT id, path FROM model_versions v
     WHERE kind = 'spam' AND status IN ('rejected', 'retired') AND NOT active
       AND created_at < now() - make_interval(days => :days)
       AND (sha256 IS NOT NULL OR path IS NOT NULL)
       AND id NOT IN (SELECT id FROM model_versions WHERE status = 'retired'
                       ORDER BY activated_at DESC NULLS LAST, id DESC LIMIT :keep)
    """
)

FORGET_ARTIFACTS_SQL = text("DELETE FROM model_artifacts WHERE version_id = :id")
CLEAR_SHA_SQL = text("UPDATE model_versions SET sha256 = NULL WHERE id = :id")
ORPHAN_BLOBS_SQL = text(
    "DELETE FROM model_blobs b WHERE NOT EXISTS (SELECT 1 FROM model_artifacts a WHERE a.sha256 = b.sha256)"
)
PRUNE_RUNS_SQL = text("DELETE FROM job_runs WHERE outcome = 'skipped' AND started_at < now() - interval '30 days'")


def housekeeping(settings: Settings, db: Database, instance: str | None = None) -> JobResult:
    return run_job(db, "housekeeping", HOUSEKEEPING_LOCK, lambda: _housekeeping(settings, db), instance)


def _housekeeping(settings: Settings, db: Database) -> JobResult:
    learning = settings.learning
    dropped = 0
    root = models_dir(settings).resolve()
    removed_dirs: list[int] = []
    with db.session() as session, session.begin():
        if learning.raw_retention_days:
            dropped = session.execute(DROP_RAW_SQL, {"days": learning.raw_retention_days}).rowcount  # type: ignore[attr-defined]
        for version_id, path in session.execute(OLD_VERSIONS_SQL, {"days": learning.version_retention_days,
                                                                    "keep": KEEP_RETIRED}).all():
            directory = Path(path).resolve()
            if root in directory.parents and directory.is_dir():  # never outside the state directory
                shutil.rmtree(directory, ignore_errors=True)
                removed_dirs.append(int(version_id))
            session.execute(FORGET_ARTIFACTS_SQL, {"id": version_id})
            session.execute(CLEAR_SHA_SQL, {"id": version_id})
        blobs = session.execute(ORPHAN_BLOBS_SQL).rowcount  # type: ignore[attr-defined]
        pruned = session.execute(PRUNE_RUNS_SQL).rowcount  # type: ignore[attr-defined]
    leftovers = _remove_leftovers(root)
    detail = (f"raw bytes dropped from {dropped} message(s); files of {len(removed_dirs)} old version(s) removed; "
              f"{blobs} stored file(s) freed; {leftovers} unfinished work dir(s) removed; {pruned} old skip record(s) "
              "pruned")
    return JobResult("housekeeping", "ok", detail,
                     data={"raw_dropped": dropped, "versions": removed_dirs, "blobs": blobs})


def _remove_leftovers(root: Path) -> int:
    """Work and extraction directories of runs that died (older than a day: a live run is never that old)."""
    if not root.is_dir():
        return 0
    count = 0
    for path in root.iterdir():
        if path.name.startswith((".work-", ".extract-")) and time.time() - path.stat().st_mtime > LEFTOVER_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
            count += 1
    return count


def kb_sync(settings: Settings, db: Database, instance: str | None = None) -> JobResult:
    """Make the knowledge base match each of ``[learning] kb_sync_folders`` (``mailsense kb sync``)."""
    return run_job(db, "kb_sync", "mailsense.learning.kb_sync", lambda: _kb_sync(settings, db), instance)


def _kb_sync(settings: Settings, db: Database) -> JobResult:
    from daemon.kb.cli import knowledge_base

    kb = knowledge_base(settings, db)
    parts: list[str] = []
    errors: list[str] = []
    for folder in settings.learning.kb_sync_folders:
        report = kb.sync(Path(folder))
        parts.append(f"{folder}: {report.added} added, {report.updated} updated, {report.removed} removed")
        errors.extend(report.errors)
    return JobResult("kb_sync", "failed" if errors else "ok", "; ".join(parts + errors[:3]))
