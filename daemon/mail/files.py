"""Messages stored as files: mbox files, Maildirs and single-message files (``.eml``), in any mix.

One reader for every command that takes mail from disk (``mailsense import``, training data),
so they agree on two things that are easy to get wrong:

* a Maildir's ``tmp/`` holds deliveries still being written and is never read;
* an mbox message is returned with its bytes exactly as stored, not re-serialised by the
  ``email`` package (which refolds headers and changes line endings, and so the content hash
  the daemon deduplicates by).
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

MBOX_MAGIC = b"From "


def is_maildir(folder: Path) -> bool:
    return (folder / "cur").is_dir() and (folder / "new").is_dir()


def iter_mail_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(name, raw bytes)`` of every message at ``path``, in a stable order.

    ``path`` is a file (an mbox file or one message) or a folder (a Maildir, or any tree of
    Maildirs, mbox files and message files). Names are relative to ``path``: ``box/cur/1:2,S``,
    ``archive.mbox#3``. Hidden files and folders (names starting with ``.``) are skipped.
    """
    path = Path(path)
    if path.is_dir():
        yield from _iter_folder(path, path)
    else:
        yield from _iter_file(path, path.name)


def _iter_folder(root: Path, folder: Path) -> Iterator[tuple[str, bytes]]:
    prefix = "" if folder == root else f"{folder.relative_to(root)}/"
    if is_maildir(folder):
        box = mailbox.Maildir(folder, factory=None, create=False)
        for key in sorted(box.iterkeys()):  # cur/ and new/ only
            yield f"{prefix}{key}", box.get_bytes(key)
        return
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            yield from _iter_folder(root, child)
        elif child.is_file():
            yield from _iter_file(child, f"{prefix}{child.name}")


def _iter_file(path: Path, name: str) -> Iterator[tuple[str, bytes]]:
    with path.open("rb") as handle:
        head = handle.read(len(MBOX_MAGIC))
    if head != MBOX_MAGIC:
        yield name, path.read_bytes()
        return
    box = mailbox.mbox(path, create=False)
    for index, key in enumerate(box.iterkeys()):
        yield f"{name}#{index}", box.get_bytes(key)
