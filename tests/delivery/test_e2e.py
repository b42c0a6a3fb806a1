"""``mailsense run`` in smtp mode: approved drafts reach the SMTP server once each, rejected ones never."""

from __future__ import annotations

from sqlalchemy import text

from tests.delivery.conftest import add_draft, approve, draft_row, folder_messages
from tests.helpers import wait_for


def test_daemon_sends_approved_drafts_once_through_smtp(  # type: ignore[no-untyped-def]
        daemon_factory, db, dovecot, mailbox_user, smtp_sink) -> None:
    sink, port = smtp_sink
    proc = daemon_factory()
    proc.env.update({
        "MAILSENSE_ACCOUNTS__TEST__DELIVERY__MODE": "smtp",
        "MAILSENSE_ACCOUNTS__TEST__DELIVERY__FROM_ADDRESS": "support@example.com",
        "MAILSENSE_ACCOUNTS__TEST__DELIVERY__SMTP_HOST": "127.0.0.1",
        "MAILSENSE_ACCOUNTS__TEST__DELIVERY__SMTP_PORT": str(port),
        "MAILSENSE_ACCOUNTS__TEST__DELIVERY__SMTP_TLS": "none",
    })
    proc.start()
    proc.wait_log("running:", timeout=60)
    approved = [add_draft(db, n)[0] for n in range(2)]
    rejected, _ = add_draft(db, 2)
    for draft_id in approved:
        approve(db, draft_id)
    with db.session() as session:
        session.execute(text("UPDATE drafts SET status = 'rejected', reject_reason = 'wrong' WHERE id = :id"),
                        {"id": rejected})
        session.commit()
    wait_for(lambda: all(draft_row(db, d)["status"] == "sent" for d in approved), 30, "both sent", proc.log)
    assert proc.terminate() == 0
    sent_ids = sorted(draft_row(db, d)["outgoing_message_id"] for d in approved)
    assert len(sink.messages) == 2
    assert sorted(m["Message-ID"] for m in folder_messages(dovecot, mailbox_user, "Sent")) == sent_ids
    assert draft_row(db, rejected)["outgoing_message_id"] is None
    assert "Traceback" not in proc.log()
