"""Large mail over IMAP: fetched a bounded number of bytes at a time, and over the cap kept by its headers."""

from __future__ import annotations

from sqlalchemy import text

from tests.helpers import make_message, wait_for


def rows(db) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return [dict(r._mapping) for r in s.execute(text(
            "SELECT subject, stage, size, length(raw) AS stored_bytes, quarantine_reason FROM messages ORDER BY uid"))]


def test_an_oversized_message_is_recorded_by_its_headers_and_left_in_the_mailbox(
    daemon_factory, dovecot, mailbox_user, db
):
    attachment = "x" * 76 + "\n"
    dovecot.append(mailbox_user, "INBOX", make_message("small one"))
    dovecot.append(mailbox_user, "INBOX", make_message("big one", body=attachment * 4000))  # about 300 KiB
    for i in range(4):  # together more than one round trip's byte budget
        dovecot.append(mailbox_user, "INBOX", make_message(f"medium {i}", body=attachment * 500))  # about 38 KiB
    daemon = daemon_factory(account__max_message_bytes=256 * 1024, account__fetch_batch_bytes=64 * 1024).start()
    wait_for(lambda: len(rows(db)) == 6 and all(r["stage"] in ("done", "quarantined") for r in rows(db)),
             30, "six messages handled", daemon.log)

    by_subject = {r["subject"] or "": r for r in rows(db)}
    big = next(r for r in rows(db) if r["stage"] == "quarantined")
    assert big["size"] > 256 * 1024 and big["stored_bytes"] < 2048  # the headers only, the real size recorded
    assert "max_message_bytes" in str(big["quarantine_reason"]) and "stays in the mailbox" in str(
        big["quarantine_reason"])
    assert by_subject["small one"]["stage"] == "done"
    assert all(by_subject[f"medium {i}"]["stage"] == "done" for i in range(4))
    assert len(dovecot.uids(mailbox_user, "INBOX")) == 6  # nothing was taken out of the mailbox
    assert "Traceback" not in daemon.log()
