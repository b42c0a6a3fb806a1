"""End to end: ``mailsense run`` files spam into Junk; a person's other mail client corrects it."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import text

from daemon.db.session import Database
from tests.helpers import wait_for
from tests.learning.conftest import MailClient
from tests.learning.test_corrections import message_id_of
from tests.training.samples import make_message


def test_daemon_learns_a_spam_verdict_moved_back_and_a_message_moved_into_junk(
        daemon_factory, dovecot, mailbox_user: str, db: Database, tiny_model: Path, monkeypatch):
    monkeypatch.setenv("MAILSENSE_ACCOUNTS__TEST__LEARNING__RESCAN_SECONDS", "0.5")
    rng = random.Random(5)
    spam, ham = make_message(True, rng), make_message(False, rng)
    for raw in (spam, ham):
        dovecot.append(mailbox_user, "INBOX", raw)
    daemon = daemon_factory(spam__enabled=True, spam__model_dir=str(tiny_model)).start()

    def labels() -> list[tuple[str, str, str]]:
        with db.session() as s:
            return [tuple(r) for r in s.execute(text(  # type: ignore[misc]
                "SELECT m.message_id, l.label, l.source FROM spam_labels l JOIN messages m ON m.id = l.message_id "
                "ORDER BY l.id"))]

    def filed() -> bool:
        with db.session() as s:
            return s.execute(text("SELECT count(*) FROM messages WHERE stage = 'done'")).scalar_one() == 2
    wait_for(filed, 120, "classification and filing", daemon.log)
    assert len(dovecot.uids(mailbox_user, "Junk")) == 1
    # The tracker has seen the daemon's own move into Junk, and took it for no label. (Waiting for it
    # also keeps the person's move out of the moment right after the filing's EXPUNGE, when the INBOX
    # watcher can miss an EXISTS that arrives together with its "+ idling"; see the report.)
    wait_for(lambda: _seen_in_junk(db), 30, "the tracker seeing the filed spam in Junk", daemon.log)
    assert labels() == []

    person = MailClient(dovecot, mailbox_user)
    person.move("Junk", message_id_of(spam), "INBOX")
    wait_for(lambda: labels() == [(message_id_of(spam), "ham", "user_move")], 30, "the ham label", daemon.log)
    person.move("INBOX", message_id_of(ham), "Junk")
    wait_for(lambda: len(labels()) == 2, 30, "the spam label", daemon.log)
    assert labels()[1] == (message_id_of(ham), "spam", "user_move")
    with db.session() as s:  # a correction never sends the message through the pipeline again
        assert s.execute(text("SELECT count(*) FROM mail_actions")).scalar_one() == 1
    assert daemon.terminate() == 0


def _seen_in_junk(db: Database) -> bool:
    with db.session() as s:
        return s.execute(text("SELECT count(*) FROM learning_places WHERE kind = 'junk'")).scalar_one() == 1


def test_daemon_bootstraps_once_from_junk_and_kept_folders(daemon_factory, dovecot, mailbox_user: str, db: Database,
                                                           monkeypatch):
    from tests.helpers import make_message as plain_message

    monkeypatch.setenv("MAILSENSE_ACCOUNTS__TEST__LEARNING__BOOTSTRAP", "true")
    dovecot.create_folder(mailbox_user, "Archive")
    for folder in ("Junk", "Junk", "Archive", "Archive"):
        dovecot.append(mailbox_user, folder, plain_message(f"kept in {folder}"))
    daemon = daemon_factory().start()

    def finished() -> bool:
        with db.session() as s:
            return bool(s.execute(text("SELECT count(*) FROM learning_bootstraps WHERE finished_at IS NOT NULL"))
                        .scalar_one())
    wait_for(finished, 60, "the bootstrap", daemon.log)
    with db.session() as s:
        rows = s.execute(text("SELECT l.label, m.source, m.stage FROM spam_labels l "
                              "JOIN messages m ON m.id = l.message_id")).all()
    assert sorted(tuple(r) for r in rows) == [("ham", "bootstrap", "done")] * 2 + [("spam", "bootstrap", "done")] * 2
    assert "bootstrap: done: spam 2, ham 2 labelled" in daemon.log()
    assert daemon.terminate() == 0
    dovecot.append(mailbox_user, "Junk", plain_message("arrived later"))
    daemon.start()  # a restart does not bootstrap again: it goes straight to watching for corrections

    def looked_again() -> bool:
        with db.session() as s:
            return s.execute(text("SELECT uid_next FROM learning_folders WHERE name = 'Junk'")).scalar() == 4
    wait_for(looked_again, 30, "the tracker's look after the restart", daemon.log)
    assert daemon.terminate() == 0
    assert daemon.log().count("learning from the mailbox") == 0
