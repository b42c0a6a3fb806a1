"""Bad input and bad surroundings: malformed mail, wrong passwords, dead servers, SMTP ingress."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage

from sqlalchemy import text

from daemon.db.session import Database
from tests.helpers import free_port, imap_errors, make_message, wait_for

TRUNCATED_MIME = (
    b"From: a@example.org\r\nTo: b@example.org\r\nSubject: truncated\r\nMessage-ID: <trunc@example.org>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
    b"--XYZ\r\nContent-Type: text/plain\r\n\r\nThe first part and then the message stops mid-"
)
BAD_CHARSET = (
    b"From: =?x-unknown?q?Bad=E9?= <c@example.org>\r\nTo: b@example.org\r\n"
    b"Subject: =?utf-8?b?not base64 at all?=\r\nMessage-ID: <charset@example.org>\r\n"
    b"Content-Type: text/plain; charset=klingon-8\r\n\r\nCaf\xe9 cr\xe8me \xff\xfe broken bytes\r\n"
)
NO_HEADERS = b"\r\n\r\njust some bytes without any header at all\r\n"


def big_attachment_message(size: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "d@example.org"
    msg["To"] = "b@example.org"
    msg["Subject"] = "big attachment"
    msg["Message-ID"] = "<big@example.org>"
    msg.set_content("see attached")
    msg.add_attachment(b"\x00\x01" * (size // 2), maintype="application", subtype="octet-stream",
                       filename="big.bin")
    return msg.as_bytes()


def by_subject(db: Database) -> dict[str, dict]:
    with db.session() as s:
        return {
            r.key: dict(r._mapping)
            for r in s.execute(text(
                "SELECT coalesce(subject, message_id, 'id' || id) AS key, stage, quarantine_reason, size, "
                "attachments, body_text, parse_defects FROM messages"))
        }


def test_malformed_input_is_kept_and_the_daemon_keeps_running(daemon_factory, dovecot, mailbox_user, db):
    for raw in (TRUNCATED_MIME, BAD_CHARSET, NO_HEADERS, big_attachment_message(20 * 1024 * 1024)):
        dovecot.append(mailbox_user, "INBOX", raw)
    daemon = daemon_factory().start()
    wait_for(lambda: len(by_subject(db)) == 4, 60, "all four stored", daemon.log)
    wait_for(lambda: all(r["stage"] in ("done", "quarantined") for r in by_subject(db).values()), 60,
             "all four processed", daemon.log)
    rows = by_subject(db)
    assert rows["truncated"]["stage"] == "done"
    assert "first part" in rows["truncated"]["body_text"]
    assert rows["truncated"]["parse_defects"]  # the missing end boundary is recorded
    charset_row = next(r for k, r in rows.items() if k not in ("truncated", "big attachment") and r["body_text"])
    assert charset_row["stage"] == "done" and "Caf" in charset_row["body_text"]
    big = rows["big attachment"]
    assert big["stage"] == "done" and big["size"] > 20 * 1024 * 1024
    assert big["attachments"][0]["filename"] == "big.bin"
    assert big["attachments"][0]["size"] == 20 * 1024 * 1024
    [quarantined] = [r for r in rows.values() if r["stage"] == "quarantined"]
    assert "header" in quarantined["quarantine_reason"]
    # The loop goes on: a normal message after the bad ones is processed.
    dovecot.append(mailbox_user, "INBOX", make_message("still alive"))
    wait_for(lambda: by_subject(db).get("still alive", {}).get("stage") == "done", 20, "a normal message",
             daemon.log)
    assert "Traceback" not in daemon.log()
    assert daemon.terminate() == 0


def test_zero_byte_message_over_smtp_is_quarantined(daemon_factory, db):
    port = free_port()
    daemon = daemon_factory(smtp_ingress__enabled=True, smtp_ingress__port=port, accounts=False).start()
    daemon.wait_log("ingress listening")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("a@example.org", ["b@example.org"], b"")
    wait_for(lambda: any(r["stage"] == "quarantined" for r in by_subject(db).values()), 20, "quarantine",
             daemon.log)
    [row] = by_subject(db).values()
    assert row["size"] <= 2 and "empty" in row["quarantine_reason"]  # SMTP DATA adds the final CRLF
    assert daemon.terminate() == 0


def test_import_of_a_zero_byte_file_and_a_maildir(tmp_path, db_url, db, state_dir):
    """``mailsense import`` stores everything raw; the pipeline then quarantines what cannot be parsed."""
    import mailbox

    from daemon.cli import main

    (tmp_path / "empty.eml").write_bytes(b"")
    maildir = mailbox.Maildir(tmp_path / "Maildir", create=True)
    maildir.add(make_message("from maildir"))
    config = state_dir / "import.toml"
    config.write_text(f'[daemon]\nstate_dir = "{state_dir}"\n[database]\nurl = "{db_url}"\n')
    args = ["-c", str(config), "import", str(tmp_path / "empty.eml"), str(tmp_path / "Maildir")]
    assert main(args) == 0
    assert main(args) == 0  # repeating an import stores nothing twice
    with db.session() as s:
        sizes = sorted(s.execute(text("SELECT size FROM messages")).scalars())
    assert len(sizes) == 2 and sizes[0] == 0


def test_smtp_ingress_feeds_the_same_pipeline(daemon_factory, db):
    port = free_port()
    daemon = daemon_factory(smtp_ingress__enabled=True, smtp_ingress__port=port, accounts=False).start()
    daemon.wait_log("ingress listening")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail("alice@example.org", ["support@example.com"], make_message("over smtp"))
        client.sendmail("alice@example.org", ["support@example.com"], make_message("second"))
    wait_for(lambda: sum(r["stage"] == "done" for r in by_subject(db).values()) == 2, 20, "both parsed",
             daemon.log)
    with db.session() as s:
        sources = s.execute(text("SELECT DISTINCT m.source, a.name FROM messages m JOIN accounts a "
                                 "ON a.id = m.account_id")).all()
    assert [tuple(r) for r in sources] == [("smtp", "smtp")]
    assert daemon.terminate() == 0


def test_lmtp_ingress(daemon_factory, db):
    port = free_port()
    daemon = daemon_factory(smtp_ingress__enabled=True, smtp_ingress__port=port, smtp_ingress__lmtp=True,
                            accounts=False).start()
    daemon.wait_log("ingress listening")
    with smtplib.LMTP("127.0.0.1", port) as client:
        client.sendmail("alice@example.org", ["support@example.com"], make_message("over lmtp"))
    wait_for(lambda: by_subject(db).get("over lmtp", {}).get("stage") == "done", 20, "lmtp message", daemon.log)
    assert daemon.terminate() == 0


def test_unreachable_server_is_retried_with_backoff_and_logged_once(daemon_factory, db):
    port = free_port()
    daemon = daemon_factory(account__port=free_port(), account__tls="none", daemon__health_port=port).start()
    # Three refused attempts (the backoff waits 0.5-1 s, then 1-2 s): logged once, not three times.
    wait_for(lambda: imap_errors(port, "connection") >= 3, 20, "two retries", daemon.log)
    assert daemon.running()
    log = daemon.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert "ConnectionRefusedError" in errors[0]
    assert "Traceback" not in log
    with db.session() as s:
        folder = s.execute(text("SELECT connected, last_error FROM folders")).one()
    assert folder.connected is False and "ConnectionRefused" in folder.last_error
    assert daemon.terminate() == 0


def test_wrong_password_is_a_clear_error_without_a_crash_loop(daemon_factory, dovecot, db, state_dir):
    port = free_port()
    daemon = daemon_factory(daemon__health_port=port)
    daemon.env["MAILSENSE_TEST_PASSWORD"] = "wrong-password"
    daemon.start()
    daemon.wait_log("login refused")
    # What is under test is that nothing follows the refusal: the daemon neither exits nor tries again
    # (a refused login waits 30 s; the ordinary backoff would retry within 1 s, so 2 s would show it).
    time.sleep(2)
    assert daemon.running()
    assert imap_errors(port, "auth") == 1
    log = daemon.log()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1, log
    assert "login refused" in errors[0] and "retrying in" in errors[0]
    assert "wrong-password" not in log  # never log secrets
    assert daemon.terminate() == 0
