"""No draft for old mail: ``[drafts] max_age``, by the Date header, else by when the mail was received.

A reply to a question asked weeks ago helps nobody and looks odd; and when Mailsense is pointed at
a mailbox that already holds mail, old questions must not fill the review queue.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.config import ConfigError, load_settings
from daemon.db.session import Database
from daemon.drafts.eligibility import SKIP_RULES, MailFacts, Rules, Skip, skip
from daemon.kb.embeddings import Embedder
from daemon.kb.store import KnowledgeBase
from tests.helpers import wait_for

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
WEEK = Rules(max_age=timedelta(days=7))


def facts(**kw: object) -> MailFacts:
    base: dict[str, object] = {"from_addr": "maria@example.org", "to_addrs": ["support@example.com"], "headers": {}}
    base.update(kw)
    return MailFacts(**base)  # type: ignore[arg-type]


def test_too_old_is_a_skip_rule():
    assert "too_old" in SKIP_RULES


def test_old_by_the_date_header():
    found = skip(facts(sent_at=NOW - timedelta(days=10, hours=3)), WEEK, now=NOW)
    assert found is not None and found.rule == "too_old"
    assert found.reason == "too old for a draft: 10 days old by its Date header (2026-11-22), max_age 7 days"


def test_recent_mail_and_mail_dated_in_the_future_get_drafts():
    assert skip(facts(sent_at=NOW - timedelta(days=6, hours=23)), WEEK, now=NOW) is None
    assert skip(facts(sent_at=NOW + timedelta(days=30)), WEEK, now=NOW) is None


def test_without_a_date_header_the_newest_received_header_counts():
    received = ["from mx.example.org by mail.example.com; Sun, 01 Nov 2026 10:00:00 +0000",
                "from client by mx.example.org; Sat, 31 Oct 2026 09:00:00 +0000"]
    found = skip(facts(headers={"received": received}), WEEK, now=NOW)
    assert found == Skip("too_old", "too old for a draft: 30 days old by its Received header (2026-11-01), "
                                    "max_age 7 days")


def test_without_any_header_date_the_time_it_was_stored_counts():
    found = skip(facts(received_at=NOW - timedelta(days=8)), WEEK, now=NOW)
    assert found is not None and found.rule == "too_old" and "8 days old by when it was received" in found.reason
    assert skip(facts(received_at=NOW - timedelta(hours=1)), WEEK, now=NOW) is None
    assert skip(facts(), WEEK, now=NOW) is None  # no date at all: nothing says it is old


def test_no_limit_and_other_rules_first():
    assert skip(facts(sent_at=NOW - timedelta(days=3000)), Rules(), now=NOW) is None
    found = skip(facts(sent_at=NOW - timedelta(days=30), spam_verdict="spam"), WEEK, now=NOW)
    assert found is not None and found.rule == "spam"


def _config(tmp_path: Path, drafts_extra: str = "") -> Path:
    path = tmp_path / "mailsense.toml"
    path.write_text(f"[drafts]\n{drafts_extra}\n")
    return path


@pytest.mark.parametrize(("value", "days"), [(None, 7), ("30d", 30), ("1d", 1), ("off", None)])
def test_max_age_setting(tmp_path: Path, value: str | None, days: int | None):
    extra = "" if value is None else f'max_age = "{value}"'
    settings = load_settings(_config(tmp_path, extra), environ={})
    assert settings.drafts.max_age_delta == (None if days is None else timedelta(days=days))


@pytest.mark.parametrize("value", ["a week", "0d", "7", "7h"])
def test_a_bad_max_age_is_a_config_error_naming_the_key(tmp_path: Path, value: str):
    with pytest.raises(ConfigError) as info:
        load_settings(_config(tmp_path, f'max_age = "{value}"'), environ={})
    assert "drafts.max_age" in str(info.value) and '"7d"' in str(info.value) and '"off"' in str(info.value)


KB = {"wifi.md": "# Wi-Fi keeps disconnecting\n\nIf the Wi-Fi connection drops every few minutes, restart "
                 "the router.\n\n1. Unplug the router, wait thirty seconds and plug it in again.\n"}
QUESTION = "Hi,\n\nmy Wi-Fi keeps disconnecting every few minutes. How do I fix this?\n\nThanks,\nMaria\n"


def question(subject: str, date: datetime) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Maria Lopez <maria@example.org>"
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["Date"] = format_datetime(date)
    msg.set_content(QUESTION)
    return msg.as_bytes()


def test_the_daemon_drafts_for_a_new_question_but_not_for_one_dated_weeks_ago(
    daemon_factory, db_url: str, dovecot, mailbox_user: str, embedder: Embedder, tmp_path: Path
):
    db = Database.from_url(db_url, pool_size=2)
    for name, content in KB.items():
        (tmp_path / "kb").mkdir(exist_ok=True)
        (tmp_path / "kb" / name).write_text(content)
    KnowledgeBase(db, embedder).add([tmp_path / "kb"])
    now = datetime.now(UTC)
    dovecot.append(mailbox_user, "INBOX", question("Wifi asked long ago", now - timedelta(days=20)))
    dovecot.append(mailbox_user, "INBOX", question("Wifi asked today", now - timedelta(minutes=5)))
    daemon = daemon_factory(drafts__enabled=True).start()  # the test helpers start from "all"

    def done() -> bool:
        with db.session() as s:
            stages = s.execute(text("SELECT stage FROM messages")).scalars().all()
        return len(stages) == 2 and set(stages) == {"done"}

    wait_for(done, 120, "both messages through the draft stage", daemon.log)
    with db.session() as s:
        rows = {r.subject: r for r in s.execute(text(
            "SELECT m.subject, d.status, k.rule, k.reason FROM messages m LEFT JOIN drafts d ON d.message_id = m.id "
            "LEFT JOIN draft_skips k ON k.message_id = m.id"))}
    assert rows["Wifi asked today"].status in ("pending", "needs_human") and rows["Wifi asked today"].rule is None
    old = rows["Wifi asked long ago"]
    assert old.status is None and old.rule == "too_old"
    assert old.reason.startswith("too old for a draft: 20 days old by its Date header")
    assert daemon.terminate() == 0
    db.dispose()
