"""The day-one bootstrap: Junk is spam, kept mail is ham, the newest N per class, once, outside the pipeline."""

from __future__ import annotations

from sqlalchemy import text

from daemon.learning.bootstrap import bootstrap_once
from tests.helpers import make_message
from tests.learning.test_corrections import message_id_of


def put(dovecot, user: str, folder: str, subject: str, day: int, flags: tuple[str, ...] = ()) -> str:
    raw = make_message(subject)
    dovecot.append(user, folder, raw, flags=flags, internaldate=f"{day:02d}-Nov-2026 10:00:00 +0000")
    return message_id_of(raw)


def test_bootstrap_labels_the_newest_per_class_once_and_keeps_them_out_of_the_pipeline(
        harness_factory, dovecot, mailbox_user):
    for folder in ("Junk/Phishing", "Archive", "Trash"):
        dovecot.create_folder(mailbox_user, folder)
    old_spam = put(dovecot, mailbox_user, "Junk", "old spam", 1)
    spam = [put(dovecot, mailbox_user, "Junk", "spam a", 10), put(dovecot, mailbox_user, "Junk/Phishing", "spam b", 11)]
    spam.append(put(dovecot, mailbox_user, "Junk", "spam c", 12))
    read = put(dovecot, mailbox_user, "INBOX", "read mail", 20, ("\\Seen",))
    unread = put(dovecot, mailbox_user, "INBOX", "unread mail", 21)
    filed = [put(dovecot, mailbox_user, "Archive", "filed a", 18), put(dovecot, mailbox_user, "Archive", "filed b", 19)]
    put(dovecot, mailbox_user, "Archive", "filed long ago", 2)
    put(dovecot, mailbox_user, "Trash", "deleted", 25, ("\\Seen",))
    put(dovecot, mailbox_user, "Drafts", "a draft", 26, ("\\Seen",))

    harness = harness_factory(bootstrap=True, bootstrap_per_class=3)
    harness.account = harness.account.model_copy(update={"start_from": "new"})
    harness.watcher.account = harness.account
    harness.ingest()  # INBOX starts "new": what is there now is the person's, not the pipeline's
    progress = bootstrap_once(harness.account, harness.db, harness.mailbox, harness.stop)
    assert progress is not None and progress.labelled == {"spam": 3, "ham": 3}

    with harness.db.session() as s:
        rows = s.execute(text("SELECT m.message_id, l.label, l.source, m.stage, m.source FROM spam_labels l "
                              "JOIN messages m ON m.id = l.message_id")).all()
        total = s.execute(text("SELECT count(*) FROM messages")).scalar_one()
        run = s.execute(text("SELECT spam, ham, finished_at IS NOT NULL FROM learning_bootstraps")).one()
    labels = {mid: label for mid, label, *_ in rows}
    assert labels == {**{m: "spam" for m in spam}, read: "ham", filed[0]: "ham", filed[1]: "ham"}
    assert old_spam not in labels and unread not in labels
    assert {(src, stage, msource) for _, _, src, stage, msource in rows} == {("bootstrap", "done", "bootstrap")}
    assert total == 6 and tuple(run) == (3, 3, True)

    # Once per account: a restart (or a second daemon) does not run it again.
    assert bootstrap_once(harness.account, harness.db, harness.mailbox, harness.stop) is None

    # A bootstrapped spam the person moves out of Junk is a correction like any other.
    from tests.learning.conftest import MailClient

    MailClient(dovecot, mailbox_user).move("Junk/Phishing", spam[1], "Archive")
    harness.look()  # baseline
    MailClient(dovecot, mailbox_user).move("Archive", spam[1], "Junk")
    assert harness.look() == {}  # Junk to Junk: still spam, no label
    MailClient(dovecot, mailbox_user).move("Junk", spam[1], "INBOX")
    assert harness.look() == {"user_move": 1}

    from daemon import status

    with harness.db.session() as s:
        shown = status.render(status.collect(s), [])
    assert "labels: spam 2, ham 4 (the newest label of each message)" in shown  # spam[1] was moved out
    assert "test / bootstrap: spam 3, ham 3" in shown and "test / user_move: spam 0, ham 1" in shown
    assert "test / bootstrap: done" in shown and "spam 3, ham 3 labelled" in shown
