"""``mailsense import``: feed mbox files, Maildirs and .eml files through the normal pipeline.

Used for the demo path and for back-filling; rows are deduplicated by content hash, so an
import can be repeated safely.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from daemon.db.session import Database
from daemon.ingest.store import Stored, ensure_account, store_message
from daemon.mail.files import iter_mail_files
from daemon.pipeline.stage import FIRST_STAGE


def demo_mbox() -> Path:
    """A few dozen public messages (SpamAssassin public corpus) shipped with the package."""
    return Path(str(resources.files("daemon") / "data" / "demo.mbox"))


def import_paths(db: Database, account_name: str, paths: list[Path]) -> dict[str, int]:
    counts = {result.value: 0 for result in Stored}
    for path in paths:
        for _name, raw in iter_mail_files(path):
            with db.session() as session, session.begin():
                account = ensure_account(session, account_name)
                result, _ = store_message(
                    session, account_id=account.id, raw=raw, source="import", first_stage=FIRST_STAGE
                )
            counts[result.value] += 1
    return counts
