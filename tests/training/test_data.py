from __future__ import annotations

import mailbox
import random
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import insert

from daemon.training.data import DataError, iter_raw, load_database, load_path, split_validation, stratified_folds
from tests.training.samples import make_examples, make_message


def _manifest_tree(root: Path, n: int = 6) -> Path:
    rng = random.Random(3)
    rows = ["path\tlabel\tsplit"]
    for i in range(n):
        spam = i % 2 == 1
        rel = f"group/{i:03d}.eml"
        (root / "group").mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(make_message(spam, rng))
        rows.append(f"{rel}\t{'spam' if spam else 'ham'}\t{'test' if i >= n - 2 else 'train'}")
    (root / "manifest.tsv").write_text("\n".join(rows) + "\n")
    return root


def test_manifest_folder_and_split(tmp_path: Path) -> None:
    _manifest_tree(tmp_path / "corpus")
    assert len(load_path(tmp_path / "corpus")) == 6
    train = load_path(tmp_path / "corpus", split="train")
    assert len(train) == 4 and {e.label for e in train} == {0, 1}
    assert all(e.split == "train" for e in train)


def test_manifest_tarball_with_top_folder(tmp_path: Path) -> None:
    root = _manifest_tree(tmp_path / "top" / "corpus")
    archive = tmp_path / "corpus.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="corpus")
    raws = list(iter_raw(archive))
    assert [r.split for r in raws].count("test") == 2
    assert len(load_path(archive, split="test")) == 2


def test_ham_spam_folders_with_eml_mbox_and_maildir(tmp_path: Path) -> None:
    rng = random.Random(5)
    (tmp_path / "ham").mkdir()
    (tmp_path / "ham" / "one.eml").write_bytes(make_message(False, rng))
    box = mailbox.mbox(tmp_path / "ham" / "archive.mbox")
    for _ in range(2):
        box.add(make_message(False, rng))
    box.flush()
    (tmp_path / "spam").mkdir()
    maildir = mailbox.Maildir(tmp_path / "spam" / "Junk", create=True)
    for _ in range(3):
        maildir.add(make_message(True, rng))
    examples = load_path(tmp_path)
    assert sorted(e.label for e in examples) == [0, 0, 0, 1, 1, 1]


def test_bad_layouts_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ham/ and spam/"):
        load_path(tmp_path)
    (tmp_path / "manifest.tsv").write_text("path\tlabel\nx.eml\tmaybe\n")
    with pytest.raises(DataError, match="neither"):
        load_path(tmp_path)


def test_unparseable_files_are_skipped(tmp_path: Path) -> None:
    for sub in ("ham", "spam"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "ok.eml").write_bytes(make_message(sub == "spam", random.Random(1)))
    (tmp_path / "ham" / "empty.eml").write_bytes(b"")
    assert len(load_path(tmp_path)) == 2


def test_split_validation_is_stratified_and_seeded() -> None:
    examples = make_examples(40, seed=2)
    train, val = split_validation(examples, 0.25, seed=7)
    assert len(val) == 10 and sum(e.label for e in val) == 5
    again, _ = split_validation(examples, 0.25, seed=7)
    assert [e.name for e in train] == [e.name for e in again]


def test_labels_from_the_database_newest_wins(db) -> None:  # type: ignore[no-untyped-def]
    from daemon.db.tables import Account, Message
    from daemon.mail.mime import content_sha256
    from daemon.spam.tables import SpamLabel

    rng = random.Random(9)
    with db.session() as s, s.begin():
        account = Account(name="t")
        s.add(account)
        s.flush()
        ids = []
        for spam in (False, True, True):
            raw = make_message(spam, rng)
            m = Message(account_id=account.id, source="import", content_sha256=content_sha256(raw), raw=raw,
                        size=len(raw), stage="done")
            s.add(m)
            s.flush()
            ids.append(m.id)
        s.execute(insert(SpamLabel), [
            {"message_id": ids[0], "label": "ham", "source": "import"},
            {"message_id": ids[1], "label": "spam", "source": "import"},
            {"message_id": ids[2], "label": "ham", "source": "import"},
        ])
        # A later correction of the third message overrides its first label.
        s.flush()
        s.add(SpamLabel(message_id=ids[2], label="spam", source="user_move"))
    with db.session() as s:
        examples = load_database(s)
    assert sorted((e.name, e.label) for e in examples) == [(f"db:{ids[0]}", 0), (f"db:{ids[1]}", 1),
                                                           (f"db:{ids[2]}", 1)]


def test_stratified_folds_partition_every_example_and_keep_the_class_share() -> None:
    examples = make_examples(50, seed=4)  # 25 ham, 25 spam
    folds = stratified_folds(examples, 5, seed=42)
    assert sorted(i for fold in folds for i in fold) == list(range(50))
    assert all(sum(examples[i].label for i in fold) == 5 and len(fold) == 10 for fold in folds)
    assert folds == stratified_folds(examples, 5, seed=42) != stratified_folds(examples, 5, seed=43)
