"""``mailsense import``: feed mbox files, Maildirs and .eml files through the normal pipeline.

Used for the demo path and for back-filling; rows are deduplicated by content hash, so an
import can be repeated safely.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from daemon.db.session import Database
from daemon.ingest.store import Stored, ensure_account, store_message
from daemon.pipeline.stage import FIRST_STAGE


def demo_mbox() -> Path:
    """A few dozen public messages (SpamAssassin public corpus) shipped with the package."""
    return Path(str(resources.files("daemon") / "data" / "demo.mbox"))


def iter_raw_messages(path: Path) -> Iterator[bytes]:
    if path.is_dir():
        if (path / "cur").is_dir() and (path / "new").is_dir():
            box = mailbox.Maildir(path, create=False)
            for key in box.iterkeys():
                yield box.get_bytes(key)
            return
        for child in sorted(path.rglob("*")):
            if child.is_file() and not child.name.startswith("."):
                yield from iter_raw_messages(child)
        return
    with path.open("rb") as handle:
        head = handle.read(5)
    if head == b"From ":
        box = mailbox.mbox(path, create=False)
        for key in box.iterkeys():
            yield box.get_bytes(key)
    else:
        yield path.read_bytes()


def import_paths(db: Database, account_name: str, paths: list[Path]) -> dict[str, int]:
    counts = {result.value: 0 for result in Stored}
    for path in paths:
        for raw in iter_raw_messages(path):
            with db.session() as session, session.begin():
                account = ensure_account(session, account_name)
                result, _ = store_message(
                    session, account_id=account.id, raw=raw, source="import", first_stage=FIRST_STAGE
                )
            counts[result.value] += 1
    return counts
