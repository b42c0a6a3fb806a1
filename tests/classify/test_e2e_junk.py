"""End to end: ``mailsense run`` with a (tiny) trained model files spam into Junk and leaves ham alone."""

from __future__ import annotations

import random
from pathlib import Path

from sqlalchemy import text

from daemon.db.session import Database
from tests.helpers import wait_for
from tests.training.samples import make_message


def test_spam_appended_to_inbox_ends_in_junk_and_ham_stays(
    daemon_factory, dovecot, mailbox_user: str, db: Database, tiny_model: Path
):
    rng = random.Random(11)
    spam = [make_message(True, rng) for _ in range(3)]
    ham = [make_message(False, rng) for _ in range(3)]
    for raw in spam + ham:
        dovecot.append(mailbox_user, "INBOX", raw)
    daemon = daemon_factory(spam__enabled=True, spam__model_dir=str(tiny_model)).start()

    def finished() -> bool:
        with db.session() as s:
            return s.execute(text("SELECT count(*) FROM messages WHERE stage = 'done'")).scalar_one() == 6

    wait_for(finished, 120, "classification and filing of all six", daemon.log)
    with db.session() as s:
        verdicts = dict(s.execute(text("SELECT message_id, spam_verdict FROM messages")).all())
        actions = s.execute(text("SELECT count(*) FROM mail_actions WHERE status = 'done'")).scalar_one()

    def ids(raws: list[bytes]) -> list[str]:
        return [raw.split(b"Message-ID: ")[1].split(b"\n")[0].strip().decode() for raw in raws]

    assert [verdicts[i] for i in ids(spam)] == ["spam"] * 3
    assert [verdicts[i] for i in ids(ham)] == ["ham"] * 3
    assert len(dovecot.uids(mailbox_user, "Junk")) == 3 and actions == 3
    assert len(dovecot.uids(mailbox_user, "INBOX")) == 3
    for uid in dovecot.uids(mailbox_user, "Junk"):
        assert "$Junk" in dovecot.flags(mailbox_user, "Junk", uid)
        assert dovecot.fetch_raw(mailbox_user, "Junk", uid).split(b"Message-ID: ")[1].split(b"\r\n")[0].decode() \
            in ids(spam)
    assert daemon.terminate() == 0
