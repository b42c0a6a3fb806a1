"""End to end: ``mailsense run`` against Dovecot and the embedded Postgres, drafting switched on.

The KB is added through the KB store before the daemon starts; messages are APPENDed to the
INBOX the daemon watches, and the test reads the ``drafts`` table.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from daemon.db.session import Database
from daemon.kb.embeddings import Embedder
from daemon.kb.store import KnowledgeBase
from tests.drafts.conftest import SECRETS, write_kb
from tests.drafts.test_stage import INJECTION, QUESTION, email
from tests.helpers import wait_for


def test_drafts_for_questions_not_for_newsletters_once_per_message(
    daemon_factory, db_url: str, dovecot, mailbox_user: str, embedder: Embedder, tmp_path: Path
):
    db = Database.from_url(db_url, pool_size=2)
    KnowledgeBase(db, embedder).add([write_kb(tmp_path / "kb")])
    question = email("Wifi problem", QUESTION)
    dovecot.append(mailbox_user, "INBOX", question)
    dovecot.append(mailbox_user, "INBOX", email("Weekly news", "Wi-Fi tips: restart your router.",
                                                List_Id="<news.example.org>"))
    dovecot.append(mailbox_user, "INBOX", email("Internal notes please", INJECTION))
    dovecot.append(mailbox_user, "INBOX", question)  # the same message delivered twice

    daemon = daemon_factory(drafts__enabled=True, spam__enabled=False).start()

    def all_done() -> bool:
        with db.session() as s:
            stages = s.execute(text("SELECT stage FROM messages")).scalars().all()
        return len(stages) == 3 and set(stages) == {"done"}

    wait_for(all_done, 90, "three messages through the draft stage", daemon.log)
    with db.session() as s:
        rows = s.execute(text(
            "SELECT m.subject, d.status, d.text, d.citations, k.reason AS skip_reason FROM messages m "
            "LEFT JOIN drafts d ON d.message_id = m.id LEFT JOIN draft_skips k ON k.message_id = m.id "
            "ORDER BY m.id"
        )).mappings().all()
    by_subject = {r["subject"]: r for r in rows}
    assert len(rows) == 3  # the duplicate delivery is one message, so one draft

    draft = by_subject["Wifi problem"]
    assert draft["status"] == "pending" and "Unplug the router" in draft["text"]
    assert [c["title"] for c in draft["citations"] if c["quoted"]] == ["Wi-Fi keeps disconnecting"]

    assert by_subject["Weekly news"]["status"] is None  # no draft for a list, and the reason is stored
    assert by_subject["Weekly news"]["skip_reason"] == "mailing list (list-id)"
    assert draft["skip_reason"] is None

    injected = by_subject["Internal notes please"]
    assert injected["status"] in ("pending", "needs_human")
    assert not any(secret in (injected["text"] or "") for secret in SECRETS)
    log = daemon.log()
    assert "Wi-Fi keeps disconnecting every few minutes" not in log  # no message text in the logs
    assert daemon.terminate() == 0
    db.dispose()
