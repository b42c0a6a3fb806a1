"""Reading mail from disk: one reader for ``mailsense import`` and for training data."""

from __future__ import annotations

import mailbox
from pathlib import Path

from daemon.mail.files import iter_mail_files
from daemon.training.data import iter_raw

# A header folded with a tab and a body with a quoted "From " line: the email package re-serialises
# both differently, so only the stored bytes keep the content hash the daemon deduplicates by.
ODD = (
    b"From: a@example.com\nSubject: folded\n\tsubject line\nMessage-ID: <odd@example.com>\n\n"
    b">From the start\nbody\n"
)
PLAIN = b"From: b@example.com\nSubject: plain\nMessage-ID: <plain@example.com>\n\nhello\n"


def _maildir(folder: Path, delivered: list[bytes], in_progress: bytes) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    box = mailbox.Maildir(folder, create=True)
    for raw in delivered:
        box.add(raw)
    (folder / "tmp" / "1700000000.P1.host").write_bytes(in_progress)


def test_mbox_messages_keep_their_stored_bytes(tmp_path: Path) -> None:
    path = tmp_path / "archive"
    box = mailbox.mbox(path)
    for raw in (ODD, PLAIN):
        box.add(raw)
    box.flush()
    stored = [box.get_bytes(key) for key in box.iterkeys()]
    box.close()

    read = list(iter_mail_files(path))
    assert [name for name, _ in read] == ["archive#0", "archive#1"]
    assert [raw for _, raw in read] == stored
    assert b"\tsubject line" in read[0][1]


def test_a_maildirs_tmp_is_never_read(tmp_path: Path) -> None:
    _maildir(tmp_path / "box", [ODD, PLAIN], in_progress=b"From: half\n")
    (tmp_path / "single.eml").write_bytes(PLAIN)
    (tmp_path / ".hidden.eml").write_bytes(PLAIN)

    read = list(iter_mail_files(tmp_path))
    assert sorted(raw for _, raw in read) == sorted([ODD, PLAIN, PLAIN])
    assert all(b"half" not in raw for _, raw in read)
    assert read[-1][0] == "single.eml" and all(name.startswith("box/") for name, _ in read[:2])


def test_training_data_reads_the_same_way(tmp_path: Path) -> None:
    _maildir(tmp_path / "ham" / "inbox", [PLAIN], in_progress=b"From: half\n")
    (tmp_path / "spam").mkdir()
    spam = mailbox.mbox(tmp_path / "spam" / "junk.mbox")
    spam.add(ODD)
    spam.flush()
    stored = spam.get_bytes(next(spam.iterkeys()))
    spam.close()

    examples = list(iter_raw(tmp_path))
    assert [(e.label, e.raw) for e in examples] == [(0, PLAIN), (1, stored)]
    assert examples[1].name == "spam/junk.mbox#0"
