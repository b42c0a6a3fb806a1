"""Where ingestion starts on a mailbox that already holds mail, against a real Dovecot and Postgres.

Pointing Mailsense at a mailbox with years of mail must not classify, file and draft all of it:
``[accounts] start_from`` says where to begin (default: only mail that arrives after the first
connect), the choice is recorded per folder once, and reconnects, restarts, configuration changes
and UIDVALIDITY resets never re-apply it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.config import ConfigError, load_settings
from daemon.db.session import Database
from tests.helpers import REPO, make_message, wait_for

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def imap_date(when: datetime) -> str:
    """An IMAP date-time for APPEND (INTERNALDATE), independent of the locale."""
    when = when.astimezone(UTC)
    return f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year} {when:%H:%M:%S} +0000"


def use_default_start(config: Path) -> None:
    """Drop any ``start_from`` line the test helpers wrote: this run uses the built-in default."""
    lines = [line for line in config.read_text().splitlines() if not line.startswith("start_from")]
    config.write_text("\n".join(lines) + "\n")


def set_start(config: Path, value: str) -> None:
    use_default_start(config)
    config.write_text(config.read_text().replace("[[accounts]]\n", f'[[accounts]]\nstart_from = "{value}"\n'))


def subjects(db: Database, where: str = "true") -> list[str]:
    with db.session() as s:
        return list(s.execute(text(f"SELECT subject FROM messages WHERE {where} ORDER BY uid")).scalars())


def count(db: Database, where: str = "true") -> int:
    with db.session() as s:
        return s.execute(text(f"SELECT count(*) FROM messages WHERE {where}")).scalar_one()


def folder(db: Database) -> dict:
    with db.session() as s:
        row = s.execute(text("SELECT uidvalidity, last_uid, start_uid, start_from, started_at FROM folders "
                             "WHERE name = 'INBOX'")).mappings().one_or_none()
    return dict(row) if row else {}


def wait_started(db: Database, daemon) -> dict:  # type: ignore[no-untyped-def]
    """The first catch-up has recorded the start point (mail appended after this is new mail)."""
    wait_for(lambda: folder(db).get("start_from"), 20, "the folder's start point", daemon.log)
    return folder(db)


def status(config: Path) -> str:
    return subprocess.run([sys.executable, "-m", "daemon.cli", "-c", str(config), "status"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True).stdout


def test_default_processes_only_mail_that_arrives_after_the_first_connect(daemon_factory, dovecot, mailbox_user, db):
    years_ago = datetime.now(UTC) - timedelta(days=3 * 365)
    for i in range(30):
        date = years_ago + timedelta(days=30 * i) if i < 28 else datetime.now(UTC) - timedelta(hours=i - 27)
        dovecot.append(mailbox_user, "INBOX", make_message(f"old {i}"), internaldate=imap_date(date))
    daemon = daemon_factory()
    use_default_start(daemon.config)
    daemon.start()
    start = wait_started(db, daemon)
    assert (start["start_uid"], start["start_from"], start["last_uid"]) == (30, "new mail only", 30)
    uid = dovecot.append(mailbox_user, "INBOX", make_message("new after start"))
    wait_for(lambda: count(db, "stage = 'done'") == 1, 20, "the new message", daemon.log)
    time.sleep(1.5)  # nothing else trickles in
    assert subjects(db) == ["new after start"]
    assert folder(db)["last_uid"] == uid
    out = status(daemon.config)
    assert f"start: new mail only, from UID 31 on {start['started_at']:%Y-%m-%d %H:%M}" in out
    assert daemon.terminate() == 0


def test_a_window_takes_only_the_recent_part_of_the_mailbox(daemon_factory, dovecot, mailbox_user, db):
    now = datetime.now(UTC)
    recent = {5, 6, 7, 20, 29}  # interleaved: old mail with higher UIDs sits between recent mail
    for i in range(30):
        date = now - timedelta(days=2, hours=i) if i in recent else now - timedelta(days=60 + i)
        dovecot.append(mailbox_user, "INBOX", make_message(f"{'recent' if i in recent else 'old'} {i}"),
                       internaldate=imap_date(date))
    daemon = daemon_factory()
    set_start(daemon.config, "7d")
    daemon.start()
    start = wait_started(db, daemon)
    since = (start["started_at"].astimezone(UTC) - timedelta(days=7)).date()
    assert start["start_from"] == f"since {since:%Y-%m-%d} (7d)"
    assert start["start_uid"] == 30
    wait_for(lambda: count(db, "stage = 'done'") == 5, 20, "the recent messages", daemon.log)
    uid = dovecot.append(mailbox_user, "INBOX", make_message("new after start"))
    wait_for(lambda: count(db, "stage = 'done'") == 6, 20, "the new message", daemon.log)
    time.sleep(1.5)
    assert subjects(db) == [f"recent {i}" for i in sorted(recent)] + ["new after start"]
    assert folder(db)["last_uid"] == uid
    out = status(daemon.config)
    assert f"start: mail since {since:%Y-%m-%d} (7d) and new mail from UID 31 on " in out
    assert daemon.terminate() == 0


def test_restarts_reconnects_and_a_changed_setting_do_not_reapply_the_start_point(
    daemon_factory, dovecot, mailbox_user, db
):
    two_days_ago = imap_date(datetime.now(UTC) - timedelta(days=2))
    for i in range(3):
        dovecot.append(mailbox_user, "INBOX", make_message(f"old {i}"), internaldate=two_days_ago)
    daemon = daemon_factory()
    use_default_start(daemon.config)
    daemon.start()
    start = wait_started(db, daemon)
    dovecot.append(mailbox_user, "INBOX", make_message("first"))
    wait_for(lambda: count(db, "stage = 'done'") == 1, 20, "the first new message", daemon.log)
    assert daemon.terminate() == 0

    for i in range(2):  # arrives while the daemon is down: caught up from last_uid
        dovecot.append(mailbox_user, "INBOX", make_message(f"while down {i}"))
    set_start(daemon.config, "all")  # a changed setting applies to folders not started yet, not to this one
    daemon.start()
    wait_for(lambda: count(db, "stage = 'done'") == 3, 20, "the catch-up after the restart", daemon.log)

    dovecot.stop()  # the same daemon reconnects
    time.sleep(1)
    dovecot.start()
    dovecot.append(mailbox_user, "INBOX", make_message("after reconnect"))
    wait_for(lambda: count(db, "stage = 'done'") == 4, 40, "mail after the reconnect", daemon.log)
    time.sleep(1.5)
    assert subjects(db) == ["first", "while down 0", "while down 1", "after reconnect"]
    after = folder(db)
    assert {k: after[k] for k in ("start_uid", "start_from", "started_at")} == {
        k: start[k] for k in ("start_uid", "start_from", "started_at")
    }
    log = daemon.log()
    assert "connected again" in log
    assert "start_from = 'all' only applies to a folder's first connect" in log
    assert daemon.terminate() == 0


def test_a_uidvalidity_reset_keeps_the_recorded_start_point(daemon_factory, dovecot, mailbox_user, db):
    three_days_ago = imap_date(datetime.now(UTC) - timedelta(days=3))
    for i in range(3):
        dovecot.append(mailbox_user, "INBOX", make_message(f"old {i}"), internaldate=three_days_ago)
    # Received an hour before the start: SINCE (dates only) cannot tell it from new mail, INTERNALDATE can.
    dovecot.append(mailbox_user, "INBOX", make_message("old this morning"),
                   internaldate=imap_date(datetime.now(UTC) - timedelta(hours=1)))
    daemon = daemon_factory()
    use_default_start(daemon.config)
    daemon.start()
    start = wait_started(db, daemon)
    dovecot.append(mailbox_user, "INBOX", make_message("kept"))
    wait_for(lambda: count(db, "stage = 'done'") == 1, 20, "the first new message", daemon.log)
    with db.session() as s:
        kept_id = s.execute(text("SELECT id FROM messages")).scalar_one()
    assert daemon.terminate() == 0

    # Every UID changes; the three old messages keep their INTERNALDATE and must still not be processed.
    recreated = dovecot.recreate_folder_with_same_messages(mailbox_user, "INBOX")
    dovecot.append(mailbox_user, "INBOX", make_message("new after reset"))
    daemon.start()
    wait_for(lambda: count(db, "stage = 'done'") == 2, 20, "the rescan", daemon.log)
    time.sleep(1.5)
    assert subjects(db) == ["kept", "new after reset"]
    with db.session() as s:
        kept = s.execute(text("SELECT id, uidvalidity, uid FROM messages WHERE subject = 'kept'")).one()
    assert kept.id == kept_id and kept.uidvalidity == recreated.new_uidvalidity  # matched, not processed again
    after = folder(db)
    assert after["uidvalidity"] == recreated.new_uidvalidity
    assert (after["start_from"], after["started_at"]) == (start["start_from"], start["started_at"])
    assert after["last_uid"] == max(dovecot.uids(mailbox_user, "INBOX"))
    assert after["start_uid"] == max(dovecot.uids(mailbox_user, "INBOX"))  # re-based on the new UIDs
    assert "UIDVALIDITY changed" in daemon.log()
    assert "1 new message(s) stored, 1 already known, 4 from before the start point left out" in daemon.log()
    assert daemon.terminate() == 0


def _config(tmp_path: Path, account_extra: str = "", drafts_extra: str = "") -> Path:
    path = tmp_path / "mailsense.toml"
    path.write_text(
        f"[drafts]\n{drafts_extra}\n"
        '[[accounts]]\nname = "support"\nhost = "imap.example.com"\nuser = "support@example.com"\n'
        f'password_env = "X"\n{account_extra}\n'
    )
    return path


@pytest.mark.parametrize(("value", "window"), [("new", None), ("all", None), ("7d", 7), ("30d", 30), (" 30D ", 30)])
def test_start_from_accepts_new_all_and_day_windows(tmp_path: Path, value: str, window: int | None):
    settings = load_settings(_config(tmp_path, f'start_from = "{value}"'), environ={})
    account = settings.account("support")
    assert account.start_window_days == window
    assert account.start_from == value.strip().lower()
    assert load_settings(_config(tmp_path), environ={}).account("support").start_from == "new"


@pytest.mark.parametrize("value", ["last week", "0d", "7", "-3d", "7 weeks", ""])
def test_a_bad_start_from_is_a_config_error_naming_the_key_and_the_forms(tmp_path: Path, value: str):
    with pytest.raises(ConfigError) as info:
        load_settings(_config(tmp_path, f'start_from = "{value}"'), environ={})
    message = str(info.value)
    assert "accounts[support].start_from" in message
    assert '"new"' in message and '"all"' in message and '"7d"' in message


def test_start_from_from_the_environment(tmp_path: Path):
    settings = load_settings(_config(tmp_path), environ={"MAILSENSE_ACCOUNTS__SUPPORT__START_FROM": "30d"})
    assert settings.account("support").start_window_days == 30
    with pytest.raises(ConfigError, match=r"accounts\[support\]\.start_from"):
        load_settings(_config(tmp_path), environ={"MAILSENSE_ACCOUNTS__SUPPORT__START_FROM": "yesterday"})


@pytest.mark.e2e  # runs `mailsense check-config`
def test_check_config_exits_78_on_a_bad_start_from(tmp_path: Path):
    config = _config(tmp_path, 'start_from = "everything"')
    result = subprocess.run([sys.executable, "-m", "daemon.cli", "-c", str(config), "check-config"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, env={"X": "pw", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 78
    assert "accounts[support].start_from" in result.stderr + result.stdout


def test_recorded_start_points_read_back():
    from types import SimpleNamespace

    from daemon.ingest.imap import START_ALL, START_BEFORE_RECORDING, START_NEW, StartPoint, imap_date

    started = datetime(2026, 12, 2, 8, 10, tzinfo=UTC)

    def of(start_from: str | None, uid: int | None = 1233) -> StartPoint:
        return StartPoint.of(SimpleNamespace(start_uid=uid, start_from=start_from, started_at=started))  # type: ignore[arg-type]

    window = of("since 2026-11-25 (7d)")
    assert (window.uid, window.since, window.not_before) == (1233, datetime(2026, 11, 25).date(), None)
    new = of(START_NEW)
    assert (new.since, new.not_before) == (datetime(2026, 12, 1).date(), started)
    for everything in (of(START_ALL, 0), of(START_BEFORE_RECORDING, 0), of(None, None)):
        assert not everything.filters
    assert imap_date(datetime(2026, 12, 2).date()) == "2-Dec-2026"


def test_status_describes_each_start_point():
    from daemon.status import describe_start

    at = datetime(2026, 12, 2, 8, 10, tzinfo=UTC)
    assert describe_start({"start_from": "new mail only", "start_uid": 1233, "started_at": at}) == (
        "start: new mail only, from UID 1234 on 2026-12-02 08:10")
    assert describe_start({"start_from": "since 2026-11-25 (7d)", "start_uid": 1233, "started_at": at}) == (
        "start: mail since 2026-11-25 (7d) and new mail from UID 1234 on 2026-12-02 08:10")
    assert describe_start({"start_from": "all mail", "start_uid": 0, "started_at": at}) == (
        "start: all mail on 2026-12-02 08:10")
    assert describe_start({"start_from": None, "start_uid": None, "started_at": None}).startswith(
        "start: not chosen yet")


def test_internal_dates_are_parsed_with_their_zone():
    from types import SimpleNamespace

    from daemon.ingest.imap import internal_dates

    class Client:
        def uid(self, *args: object) -> tuple[str, list[bytes]]:
            return "OK", [b'1 (UID 7 INTERNALDATE " 2-Dec-2026 09:10:11 +0100")',
                          b'2 (INTERNALDATE "30-Nov-2026 23:00:00 -0500" UID 9)']

    found = internal_dates(SimpleNamespace(client=Client()), [7, 9])  # type: ignore[arg-type]
    assert found == {7: datetime(2026, 12, 2, 8, 10, 11, tzinfo=UTC), 9: datetime(2026, 12, 1, 4, 0, tzinfo=UTC)}
