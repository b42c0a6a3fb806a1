"""Who gets a draft: people, not lists, machines, bounces or ourselves."""

from __future__ import annotations

import pytest

from daemon.drafts.eligibility import SKIP_RULES, MailFacts, Rules, skip, skip_reason

NONE = Rules()


def mail(**kw: object) -> MailFacts:
    base: dict[str, object] = {"from_addr": "maria@example.org", "to_addrs": ["support@example.com"], "headers": {}}
    base.update(kw)
    return MailFacts(**base)  # type: ignore[arg-type]


def test_a_person_asking_gets_a_draft():
    assert skip_reason(mail(), NONE) is None
    assert skip_reason(mail(spam_verdict="ham"), NONE) is None


def test_spam_never_and_unsure_as_the_account_says():
    assert skip_reason(mail(spam_verdict="spam"), NONE) == "spam verdict spam"
    assert skip_reason(mail(spam_verdict="unsure"), NONE) is None  # default: drafted, the reviewer decides
    assert skip_reason(mail(spam_verdict="unsure"), Rules.build(draft_unsure=False)) == (
        'spam verdict unsure ([accounts.drafts] unsure = "skip")'
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"list-id": ["<news.example.org>"]}, "mailing list (list-id)"),
        ({"list-unsubscribe": ["<mailto:u@example.org>"]}, "mailing list (list-unsubscribe)"),
        ({"precedence": ["bulk"]}, "bulk mail (Precedence: bulk)"),
        ({"precedence": ["List"]}, "bulk mail (Precedence: list)"),
        ({"precedence": ["junk"]}, "bulk mail (Precedence: junk)"),
        ({"auto-submitted": ["auto-replied"]}, "automated (Auto-Submitted)"),
        ({"auto-submitted": ["auto-generated; owner-email=x@example.org"]}, "automated (Auto-Submitted)"),
        ({"x-autoreply": ["yes"]}, "automated (x-autoreply)"),
        ({"content-type": ['multipart/report; report-type="delivery-status"']}, "delivery or read report"
         " (multipart/report)"),
        ({"return-path": ["<>"]}, "bounce (empty Return-Path)"),
    ],
)
def test_bulk_automated_and_bounces(headers: dict[str, list[str]], expected: str):
    assert skip_reason(mail(headers=headers), NONE) == expected


def test_auto_submitted_no_and_normal_precedence_are_people():
    assert skip_reason(mail(headers={"auto-submitted": ["no"], "precedence": ["first-class"]}), NONE) is None
    assert skip_reason(mail(headers={"return-path": ["<maria@example.org>"]}), NONE) is None


@pytest.mark.parametrize(
    "sender",
    ["noreply@example.org", "no-reply@example.org", "do_not_reply@example.org", "DoNotReply@x.com",
     "MAILER-DAEMON@mx.example.org", "postmaster@example.org", "bounces+123@lists.example.org",
     "no-reply-billing@example.org"],
)
def test_senders_that_do_not_read_replies(sender: str):
    assert skip_reason(mail(from_addr=sender), NONE) == "no-reply or system sender"


def test_names_that_only_look_alike_are_people():
    for sender in ("noreen@example.org", "postmasterclass@example.org", "replyguy@example.org"):
        assert skip_reason(mail(from_addr=sender), NONE) is None, sender


def test_our_own_outgoing_mail_and_missing_sender():
    rules = Rules.build(own=["Support@Example.com"])
    assert skip_reason(mail(from_addr="support@example.com"), rules) == "our own outgoing mail"
    assert skip_reason(mail(from_addr=""), NONE) == "no sender address"


def test_recipient_and_folder_scope():
    rules = Rules.build(recipients=["help@example.com"], folders=["INBOX"])
    assert skip_reason(mail(folder="INBOX"), rules) == "not addressed to a drafted address"
    assert skip_reason(mail(folder="INBOX", to_addrs=["help@example.com"]), rules) is None
    cc = {"cc": ["Help Desk <HELP@example.com>, other@example.org"]}
    assert skip_reason(mail(folder="INBOX", headers=cc), rules) is None
    assert skip_reason(mail(folder="Archive", to_addrs=["help@example.com"]), rules) == (
        "folder not configured for drafts"
    )


@pytest.mark.parametrize(
    ("facts", "rules", "rule"),
    [
        ({"spam_verdict": "unsure"}, Rules.build(draft_unsure=False), "spam"),
        ({"from_addr": ""}, NONE, "no_sender"),
        ({"from_addr": "support@example.com"}, Rules.build(own=["support@example.com"]), "own_mail"),
        ({"from_addr": "no-reply@example.org"}, NONE, "no_reply"),
        ({"headers": {"content-type": ["multipart/report"]}}, NONE, "report"),
        ({"headers": {"return-path": ["<>"]}}, NONE, "bounce"),
        ({"headers": {"x-autoreply": ["yes"]}}, NONE, "automated"),
        ({"headers": {"list-id": ["<news.example.org>"]}}, NONE, "mailing_list"),
        ({"headers": {"precedence": ["bulk"]}}, NONE, "bulk"),
        ({"folder": "Archive"}, Rules.build(folders=["INBOX"]), "folder"),
        ({}, Rules.build(recipients=["help@example.com"]), "recipient"),
    ],
)
def test_every_skip_names_a_stable_rule(facts: dict[str, object], rules: Rules, rule: str):
    found = skip(mail(**facts), rules)
    assert found is not None and found.rule == rule and rule in SKIP_RULES
    assert found.reason == skip_reason(mail(**facts), rules)
