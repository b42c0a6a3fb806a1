"""IMAP ingestion against a real Dovecot and the embedded Postgres, with the daemon as a process."""

from __future__ import annotations

import time

from sqlalchemy import text

from daemon.db.session import Database
from tests.helpers import free_port, imap_errors, make_message, metric, wait_for

CATCH_UP_DONE = "new message(s) stored"  # logged at the end of a catch-up that found messages


def rows(db: Database) -> list[dict]:
    with db.session() as s:
        return [dict(r._mapping) for r in s.execute(text(
            "SELECT m.id, f.name AS folder, m.uidvalidity, m.uid, m.stage, m.subject, m.message_id "
            "FROM messages m LEFT JOIN folders f ON f.id = m.folder_id ORDER BY m.id"))]


def count(db: Database, where: str = "true") -> int:
    with db.session() as s:
        return s.execute(text(f"SELECT count(*) FROM messages WHERE {where}")).scalar_one()


def test_append_is_stored_once_via_idle(daemon_factory, dovecot, mailbox_user, db):
    daemon = daemon_factory().start()
    daemon.wait_log("connected (IDLE)")
    # Append only once the daemon is in IDLE, so we measure the IDLE path, not the initial catch-up.
    wait_for(lambda: dovecot.idling(mailbox_user), 10, "the daemon's IDLE", daemon.log)
    started = time.monotonic()
    uid = dovecot.append(mailbox_user, "INBOX", make_message("via idle"))
    wait_for(lambda: count(db) == 1, 10, "the message row", daemon.log)
    latency = time.monotonic() - started
    print(f"APPEND -> stored row via IDLE: {latency:.2f}s")
    wait_for(lambda: count(db, "stage = 'done'") == 1, 10, "parsing", daemon.log)
    [row] = rows(db)
    assert (row["folder"], row["uid"], row["subject"]) == ("INBOX", uid, "via idle")
    assert row["uidvalidity"] == dovecot.uidvalidity(mailbox_user, "INBOX")
    # Ingestion must not touch the mailbox: no \Seen.
    assert "\\Seen" not in dovecot.flags(mailbox_user, "INBOX", uid)
    # Stored once: the catch-up that stored it has ended (a later one needs new mail).
    daemon.wait_log(CATCH_UP_DONE)
    assert count(db) == 1
    assert daemon.terminate() == 0


def test_append_is_stored_via_polling_when_idle_is_off(daemon_factory, dovecot, mailbox_user, db):
    daemon = daemon_factory(account__idle=False, account__poll_seconds=0.5).start()
    daemon.wait_log("connected (polling)")
    dovecot.append(mailbox_user, "INBOX", make_message("via polling"))
    wait_for(lambda: count(db, "stage = 'done'") == 1, 10, "the polled message", daemon.log)
    assert daemon.terminate() == 0


def test_restart_catches_up_without_duplicates(daemon_factory, dovecot, mailbox_user, db):
    for i in range(3):
        dovecot.append(mailbox_user, "INBOX", make_message(f"before {i}"))
    daemon = daemon_factory().start()
    wait_for(lambda: count(db) == 3, 20, "first catch-up", daemon.log)
    assert daemon.terminate() == 0
    for i in range(4):
        dovecot.append(mailbox_user, "INBOX", make_message(f"while down {i}"))
    daemon = daemon.start()
    wait_for(lambda: count(db, "stage = 'done'") == 7, 20, "catch-up after restart", daemon.log)
    daemon.wait_log(CATCH_UP_DONE)  # this run's catch-up has ended: whatever it stored is in the table
    stored = rows(db)
    assert len(stored) == 7
    assert sorted(r["uid"] for r in stored) == dovecot.uids(mailbox_user, "INBOX")
    assert daemon.terminate() == 0


def test_sigkill_mid_batch_loses_nothing_and_stores_nothing_twice(daemon_factory, dovecot, mailbox_user, db):
    total = 120
    body = "x" * 20_000 + "\n"  # big enough that the catch-up takes a moment
    for i in range(total):
        dovecot.append(mailbox_user, "INBOX", make_message(f"bulk {i}", body))
    daemon = daemon_factory(account__fetch_batch=5).start()
    wait_for(lambda: count(db) >= 10, 30, "some rows", daemon.log)
    daemon.kill()
    stored_at_kill = count(db)
    assert stored_at_kill < total, "the kill came too late to interrupt the batch; make the batch bigger"
    daemon = daemon.start()
    wait_for(lambda: count(db, "stage = 'done'") == total, 60, "all messages after the kill", daemon.log)
    daemon.wait_log(CATCH_UP_DONE)  # the restarted run's catch-up has ended: whatever it stored is in the table
    stored = rows(db)
    assert len(stored) == total
    assert sorted(r["uid"] for r in stored) == dovecot.uids(mailbox_user, "INBOX")
    assert len({r["message_id"] for r in stored}) == total
    assert daemon.terminate() == 0


def test_reconnects_after_dovecot_restart(daemon_factory, dovecot, mailbox_user, db):
    port = free_port()
    daemon = daemon_factory(daemon__health_port=port).start()
    daemon.wait_log("connected (IDLE)")
    dovecot.stop()
    # The server stays down until the daemon has seen the connection drop and a reconnect fail.
    wait_for(lambda: imap_errors(port, "connection") >= 2, 20, "a failed reconnect", daemon.log)
    dovecot.start()
    dovecot.append(mailbox_user, "INBOX", make_message("after restart"))
    wait_for(lambda: count(db, "stage = 'done'") == 1, 40, "mail after the server came back", daemon.log)
    log = daemon.log()
    assert "connected again" in log
    assert "Traceback" not in log
    assert daemon.terminate() == 0


def test_uidvalidity_change_reprocesses_nothing(daemon_factory, dovecot, mailbox_user, db):
    for i in range(3):
        dovecot.append(mailbox_user, "INBOX", make_message(f"keep {i}"))
    daemon = daemon_factory().start()
    wait_for(lambda: count(db, "stage = 'done'") == 3, 20, "first pass", daemon.log)
    before = {r["message_id"]: r for r in rows(db)}
    assert daemon.terminate() == 0

    recreated = dovecot.recreate_folder_with_same_messages(mailbox_user, "INBOX")
    dovecot.append(mailbox_user, "INBOX", make_message("new after reset"))
    port = free_port()
    daemon = daemon_factory(daemon__health_port=port).start()
    wait_for(lambda: count(db, "stage = 'done'") == 4, 20, "rescan", daemon.log)
    daemon.wait_log(CATCH_UP_DONE)  # the rescan has ended: every known message is matched and relocated
    after = {r["message_id"]: r for r in rows(db)}
    assert len(after) == 4
    for message_id, row in before.items():
        assert after[message_id]["id"] == row["id"]  # same row, location updated
        assert after[message_id]["uidvalidity"] == recreated.new_uidvalidity
    assert "UIDVALIDITY changed" in daemon.log()
    # This daemon run parsed exactly one message: the new one.
    parsed = metric(port, 'mailsense_stage_outcomes_total{outcome="next",stage="parse"}')
    assert parsed == 1.0
    assert daemon.terminate() == 0


def test_status_shows_connection_checkpoint_and_states(daemon_factory, dovecot, mailbox_user, db):
    import subprocess
    import sys

    from tests.helpers import REPO

    dovecot.append(mailbox_user, "INBOX", make_message("for status"))
    daemon = daemon_factory().start()
    wait_for(lambda: count(db, "stage = 'done'") == 1, 20, "the message", daemon.log)
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "-c", str(daemon.config), "status"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    uid = dovecot.uids(mailbox_user, "INBOX")[-1]
    assert f"test / INBOX: connected, UIDVALIDITY {dovecot.uidvalidity(mailbox_user, 'INBOX')}, last UID {uid}" in out
    assert "messages: done 1" in out
    assert daemon.terminate() == 0
    out = subprocess.run([sys.executable, "-m", "daemon.cli", "-c", str(daemon.config), "status"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "test / INBOX: not connected" in out


def test_new_mail_announced_with_another_commands_answer_is_noticed(dovecot, mailbox_user):
    # Dovecot answers UID SEARCH from the session's current view and reports a message appended
    # meanwhile as "* N EXISTS" after it; imaplib files that away, and IDLE will not repeat it.
    # The watcher must see it, or the message waits for the next IDLE renewal (minutes).
    from types import SimpleNamespace

    from daemon.ingest.imap import _mail_announced

    with dovecot.connect(mailbox_user) as client:
        mailbox = SimpleNamespace(client=client)
        client.select("INBOX", readonly=True)
        _mail_announced(mailbox)  # type: ignore[arg-type]
        assert not _mail_announced(mailbox)  # type: ignore[arg-type]
        dovecot.append(mailbox_user, "INBOX", make_message("arrives during a search"))
        typ, _ = client.uid("SEARCH", "UID", "1:*")
        assert typ == "OK"
        assert _mail_announced(mailbox)  # type: ignore[arg-type]
        assert not _mail_announced(mailbox)  # type: ignore[arg-type]
