"""Delivery against the real Dovecot, the embedded Postgres and aiosmtpd, driven without a daemon process."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from daemon.db.embedded import to_libpq_url
from daemon.db.session import Database
from daemon.delivery import mailbox, store
from daemon.delivery.deliver import Deliverer
from daemon.imap import connection
from tests.delivery.conftest import DRAFT_TEXT, add_draft, approve, draft_row, folder_messages, settings_for


def deliverer(db: Database, dovecot: Any, user: str, **delivery: Any) -> tuple[Deliverer, Any]:
    settings = settings_for(dovecot, user, **delivery)
    conn = store.connect(to_libpq_url(db.url))
    return Deliverer(settings, to_libpq_url(db.url), threading.Event()), conn


def test_approved_by_sql_lands_once_in_drafts_as_a_threaded_reply(db, dovecot, imap_password) -> None:  # type: ignore[no-untyped-def]
    user = imap_password
    draft_id, original_id = add_draft(db, 1)
    d, conn = deliverer(db, dovecot, user)
    assert d.deliver_due(conn) == 0  # pending: nothing goes anywhere
    approve(db, draft_id)
    assert d.deliver_due(conn) == 1
    assert d.deliver_due(conn) == 0
    [reply] = folder_messages(dovecot, user, "Drafts")
    row = draft_row(db, draft_id)
    assert row["status"] == "delivered" and row["delivered_via"] == "drafts_folder"
    assert reply["Message-ID"] == row["outgoing_message_id"] and reply["Message-ID"].endswith("@example.com>")
    assert reply["In-Reply-To"] == original_id
    assert reply["References"] == f"<earlier@example.org> {original_id}"
    assert reply["Subject"] == "Re: Wi-Fi keeps dropping #1"
    assert reply["From"] == "Example Support <support@example.com>"
    assert reply["To"] == "Alice Example <alice@example.org>"
    body = reply.get_content()
    assert "restart the router" in body and "> My Wi-Fi drops every few minutes (case 1)." in body
    assert "\\Draft" in dovecot.flags(user, "Drafts", dovecot.uids(user, "Drafts")[0])
    conn.close()


def test_rejected_and_pending_drafts_are_never_delivered(db, dovecot, imap_password, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    user = imap_password
    sink, port = smtp_sink
    rejected, _ = add_draft(db, 1)
    with db.session() as session:
        from sqlalchemy import text
        session.execute(text("UPDATE drafts SET status = 'rejected' WHERE id = :id"), {"id": rejected})
        session.commit()
    add_draft(db, 2, confidence=1.0)  # auto_send is off by default: confidence alone sends nothing
    for mode in ({}, {"mode": "smtp", "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_tls": "none"}):
        d, conn = deliverer(db, dovecot, user, **mode)
        d._auto_approve(conn)
        assert d.deliver_due(conn) == 0
        conn.close()
    assert folder_messages(dovecot, user, "Drafts") == [] and sink.messages == []


def test_a_retry_after_an_interrupted_append_finds_the_copy_instead_of_adding_one(  # type: ignore[no-untyped-def]
        db, dovecot, imap_password) -> None:
    """The crash window: the reply is in Drafts, the status update never happened."""
    user = imap_password
    draft_id, _ = add_draft(db, 1)
    approve(db, draft_id)
    d, conn = deliverer(db, dovecot, user)
    claim = store.claim_next(conn, ["test"], d._new_message_id)
    assert claim is not None and claim.earlier_phase is None
    reply = d._build(claim, d.accounts["test"])
    mb = connection.connect(d.accounts["test"].account)
    mailbox.append(mb, "Drafts", reply.raw, "\\Draft")
    connection.close(mb)
    conn.close()  # the daemon dies here: lock gone, status still approved

    d2, conn2 = deliverer(db, dovecot, user)
    assert d2.deliver_due(conn2) == 1
    assert len(folder_messages(dovecot, user, "Drafts")) == 1
    row = draft_row(db, draft_id)
    assert row["status"] == "delivered" and row["outgoing_message_id"] == claim.outgoing_message_id
    assert row["delivery_attempts"] == 2
    conn2.close()


def test_a_draft_being_delivered_by_one_daemon_is_skipped_by_another(db, dovecot, imap_password) -> None:  # type: ignore[no-untyped-def]
    user = imap_password
    draft_id, _ = add_draft(db, 1)
    approve(db, draft_id)
    d1, conn1 = deliverer(db, dovecot, user)
    d2, conn2 = deliverer(db, dovecot, user)
    claim = store.claim_next(conn1, ["test"], d1._new_message_id)
    assert claim is not None
    assert store.claim_next(conn2, ["test"], d2._new_message_id) is None
    store.release(conn1, claim.id)
    conn1.close()
    conn2.close()


def test_smtp_mode_sends_exactly_one_message_and_keeps_a_copy_in_sent(  # type: ignore[no-untyped-def]
        db, dovecot, imap_password, smtp_sink) -> None:
    user = imap_password
    sink, port = smtp_sink
    draft_id, original_id = add_draft(db, 1)
    approve(db, draft_id)
    d, conn = deliverer(db, dovecot, user, mode="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none")
    assert d.deliver_due(conn) == 1
    assert d.deliver_due(conn) == 0
    [(sender, rcpts, raw)] = sink.messages
    assert sender == "support@example.com" and rcpts == ["alice@example.org"]
    assert f"In-Reply-To: {original_id}".encode() in raw
    row = draft_row(db, draft_id)
    assert row["status"] == "sent" and row["delivered_via"] == "smtp" and row["delivery_phase"] is None
    [copy] = folder_messages(dovecot, user, "Sent")
    assert copy["Message-ID"] == row["outgoing_message_id"]
    assert folder_messages(dovecot, user, "Drafts") == []
    conn.close()


@pytest.mark.parametrize("copy_in_sent", [True, False])
def test_smtp_send_interrupted_after_data_is_never_sent_twice(  # type: ignore[no-untyped-def]
        db, dovecot, imap_password, smtp_sink, copy_in_sent) -> None:
    user = imap_password
    sink, port = smtp_sink
    draft_id, _ = add_draft(db, 1)
    approve(db, draft_id)
    d, conn = deliverer(db, dovecot, user, mode="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none")
    claim = store.claim_next(conn, ["test"], d._new_message_id)
    assert claim is not None
    store.smtp_data_begins(conn, claim.id)
    if copy_in_sent:  # the server (or our copy) put it in Sent before the crash
        reply = d._build(claim, d.accounts["test"])
        dovecot.create_folder(user, "Sent")
        dovecot.append(user, "Sent", reply.raw, ["\\Seen"])
    conn.close()  # crash with DATA in flight

    d2, conn2 = deliverer(db, dovecot, user, mode="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_tls="none")
    d2.deliver_due(conn2)
    assert sink.messages == []
    row = draft_row(db, draft_id)
    if copy_in_sent:
        assert row["status"] == "sent"
    else:
        assert row["status"] == "approved" and row["delivery_phase"] == "held"
        assert "UPDATE drafts SET delivery_phase = NULL" in row["delivery_error"]
        assert d2.deliver_due(conn2) == 0 and sink.messages == []
    conn2.close()


def test_smtp_server_down_is_retried_with_backoff_and_logged_once(  # type: ignore[no-untyped-def]
        db, dovecot, imap_password, caplog) -> None:
    from tests.helpers import free_port

    user = imap_password
    draft_id, _ = add_draft(db, 1)
    approve(db, draft_id)
    d, conn = deliverer(db, dovecot, user, mode="smtp", smtp_host="127.0.0.1", smtp_port=free_port(),
                        smtp_tls="none")
    with caplog.at_level("ERROR"):
        assert d.deliver_due(conn) == 0
        with conn.transaction():
            conn.execute("UPDATE drafts SET delivery_next_at = now() WHERE id = %s", (draft_id,))
        assert d.deliver_due(conn) == 0
    row = draft_row(db, draft_id)
    assert row["status"] == "approved" and row["delivery_phase"] is None and row["delivery_next_at"] is not None
    assert "SMTP" in row["delivery_error"]
    errors = [r for r in caplog.records if "delivery for account test" in r.getMessage()]
    assert len(errors) == 1 and not any(r.exc_info for r in caplog.records)
    conn.close()


def test_draft_text_is_used_as_written(db, dovecot, imap_password) -> None:  # type: ignore[no-untyped-def]
    user = imap_password
    draft_id, _ = add_draft(db, 1, draft_text="Grüße — 100 % sure.")
    approve(db, draft_id)
    d, conn = deliverer(db, dovecot, user)
    assert d.deliver_due(conn) == 1
    [reply] = folder_messages(dovecot, user, "Drafts")
    assert reply.get_content().startswith("Grüße — 100 % sure.")
    assert DRAFT_TEXT not in reply.get_content()
    conn.close()


def test_the_running_deliverer_wakes_on_the_approval_notification_and_stops_cleanly(  # type: ignore[no-untyped-def]
        db, dovecot, imap_password, monkeypatch) -> None:
    from daemon.delivery import deliver
    from tests.helpers import wait_for

    monkeypatch.setattr(deliver, "POLL_SECONDS", 60.0)  # only NOTIFY can wake it in time
    user = imap_password
    draft_id, _ = add_draft(db, 1)
    stop = threading.Event()
    worker = Deliverer(settings_for(dovecot, user), to_libpq_url(db.url), stop)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        time.sleep(1.0)  # the deliverer is waiting for a notification now
        approve(db, draft_id)
        wait_for(lambda: draft_row(db, draft_id)["status"] == "delivered", 20, "delivery after NOTIFY")
    finally:
        stop.set()
        with psycopg.connect(to_libpq_url(db.url), autocommit=True) as conn:
            conn.execute("NOTIFY mailsense_drafts")  # the stop is seen at the next wake-up
        thread.join(10)
    assert not thread.is_alive()
    assert len(folder_messages(dovecot, user, "Drafts")) == 1


def test_auto_send_when_switched_on_delivers_only_confident_pending_drafts(  # type: ignore[no-untyped-def]
        db, dovecot, imap_password) -> None:
    user = imap_password
    confident, _ = add_draft(db, 1, confidence=0.97)
    unsure, _ = add_draft(db, 2, confidence=0.5)
    d, conn = deliverer(db, dovecot, user, auto_send=True, auto_send_threshold=0.9)
    d._auto_approve(conn)
    assert d.deliver_due(conn) == 1
    row = draft_row(db, confident)
    assert row["status"] == "delivered" and row["reviewed_by"] == "mailsense auto_send"
    assert draft_row(db, unsure)["status"] == "pending"
    assert len(folder_messages(dovecot, user, "Drafts")) == 1
    conn.close()
