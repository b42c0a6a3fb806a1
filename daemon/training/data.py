"""Labelled mail for training and evaluation, from files or from the database.

Accepted layouts (``load_path``):

* a folder or ``.tar.gz`` holding ``manifest.tsv`` (``path  label  split``, the format of the
  shared SpamAssassin corpus); paths are relative to the manifest,
* a folder with ``ham/`` and ``spam/`` sub-folders, each holding ``.eml`` files, mbox files
  or Maildirs (``cur/`` + ``new/``), in any mix.

``load_database`` reads the ``spam_labels`` table (user corrections and imports) joined with
the stored raw messages; the newest label of a message wins.

Messages that cannot be parsed are skipped and counted, never fatal: one broken file in a
corpus of thousands must not stop a training run.
"""

from __future__ import annotations

import csv
import io
import logging
import random
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon.mail.files import iter_mail_files
from daemon.mail.mime import ParsedMessage, Unparseable, parse_message

log = logging.getLogger(__name__)

LABELS = ("ham", "spam")


class DataError(ValueError):
    """The data path does not hold labelled mail in a layout we know; the text says what we expected."""


@dataclass(frozen=True)
class RawExample:
    """One labelled message before parsing (peer filters in the benchmark want the raw bytes)."""

    name: str
    raw: bytes
    label: int  # 1 = spam, 0 = ham
    split: str | None = None


@dataclass(frozen=True)
class Example:
    name: str
    message: ParsedMessage
    label: int
    split: str | None = None


def _label(value: str, where: str) -> int:
    value = value.strip().lower()
    if value not in LABELS:
        raise DataError(f"{where}: label {value!r} is neither 'ham' nor 'spam'")
    return LABELS.index(value)


def _manifest_rows(text: str, where: str) -> Iterator[tuple[str, int, str | None]]:
    reader = csv.DictReader(io.StringIO(text), delimiter="\t")
    if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
        raise DataError(f"{where}: manifest.tsv needs the columns path, label (and optionally split)")
    for n, row in enumerate(reader, start=2):
        yield row["path"], _label(row["label"], f"{where} line {n}"), (row.get("split") or None)


def _iter_tar(path: Path) -> Iterator[RawExample]:
    # Read the archive once, front to back: seeking backwards in a .tar.gz decompresses it
    # again from the start, which made manifest-order reads quadratic.
    files: dict[str, bytes] = {}
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                files[member.name] = handle.read()
    manifests = sorted((n for n in files if PurePosixPath(n).name == "manifest.tsv"), key=len)
    if not manifests:
        raise DataError(f"{path}: no manifest.tsv inside the archive")
    manifest = manifests[0]
    base = PurePosixPath(manifest).parent
    for rel, label, split in _manifest_rows(files[manifest].decode("utf-8"), f"{path}:{manifest}"):
        raw = files.get(str(base / rel))
        if raw is None:
            log.warning("%s: %s is listed in the manifest but missing", path, rel)
            continue
        yield RawExample(rel, raw, label, split)


def _iter_manifest_dir(root: Path, manifest: Path) -> Iterator[RawExample]:
    for rel, label, split in _manifest_rows(manifest.read_text("utf-8"), str(manifest)):
        file = manifest.parent / rel
        try:
            yield RawExample(rel, file.read_bytes(), label, split)
        except OSError as exc:
            log.warning("%s: cannot read %s: %s", root, rel, exc.strerror)


def iter_raw(path: str | Path) -> Iterator[RawExample]:
    """Raw labelled messages from any supported file layout (see the module docstring)."""
    root = Path(path)
    if root.is_file() and (root.suffix in (".gz", ".tgz", ".tar") or tarfile.is_tarfile(root)):
        yield from _iter_tar(root)
        return
    if not root.is_dir():
        raise DataError(f"{root}: not a folder or .tar.gz archive")
    manifests = sorted(root.rglob("manifest.tsv"), key=lambda p: len(p.parts))
    if manifests:
        yield from _iter_manifest_dir(root, manifests[0])
        return
    if not (root / "ham").is_dir() or not (root / "spam").is_dir():
        raise DataError(f"{root}: expected a manifest.tsv, or ham/ and spam/ folders of .eml, mbox or Maildir")
    for label, sub in enumerate(LABELS):
        for name, raw in iter_mail_files(root / sub):
            yield RawExample(f"{sub}/{name}", raw, label, None)


def parse_examples(raws: Iterable[RawExample]) -> list[Example]:
    examples: list[Example] = []
    skipped = 0
    for item in raws:
        try:
            examples.append(Example(item.name, parse_message(item.raw), item.label, item.split))
        except Unparseable:
            skipped += 1
        except Exception as exc:  # the stdlib header parser has crash bugs on malformed headers
            log.warning("%s: parser crashed (%s); skipped", item.name, type(exc).__name__)
            skipped += 1
    if skipped:
        log.warning("skipped %d unparseable messages", skipped)
    return examples


def load_path(path: str | Path, split: str | None = None) -> list[Example]:
    """Parsed examples from ``path``; ``split`` keeps only rows of that manifest split."""
    raws = (r for r in iter_raw(path) if split is None or r.split is None or r.split == split)
    examples = parse_examples(raws)
    if not examples:
        raise DataError(f"{path}: no messages found" + (f" in split {split!r}" if split else ""))
    return examples


def load_database(session: Session) -> list[Example]:
    """Messages with a label in ``spam_labels``; the newest label per message wins."""
    from daemon.db.tables import Message
    from daemon.spam.tables import SpamLabel

    # Labels are append-only; the highest id per message is the newest statement about it.
    newest = select(func.max(SpamLabel.id).label("id")).group_by(SpamLabel.message_id).subquery()
    rows = session.execute(
        select(Message.id, Message.raw, SpamLabel.label)
        .join(SpamLabel, SpamLabel.message_id == Message.id)
        .join(newest, newest.c.id == SpamLabel.id)
        .order_by(Message.id)
    )
    return parse_examples(RawExample(f"db:{mid}", raw, _label(label, f"message {mid}")) for mid, raw, label in rows)


def split_validation(
    examples: list[Example], fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """A stratified, seeded hold-out: both classes keep their share in the validation part."""
    rng = random.Random(seed)
    train: list[Example] = []
    val: list[Example] = []
    for label in (0, 1):
        group = [e for e in examples if e.label == label]
        rng.shuffle(group)
        n_val = round(len(group) * fraction)
        val.extend(group[:n_val])
        train.extend(group[n_val:])
    rng.shuffle(train)
    return train, val


def stratified_folds(examples: list[Example], k: int, seed: int) -> list[list[int]]:
    """``k`` seeded folds of example indices, each class dealt round-robin so every fold keeps its share."""
    rng = random.Random(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for label in (0, 1):
        group = [i for i, e in enumerate(examples) if e.label == label]
        rng.shuffle(group)
        for position, index in enumerate(group):
            folds[position % k].append(index)
    return [sorted(fold) for fold in folds]
