"""Who gets a draft: a person who wrote to us, not a machine, a list or ourselves.

A reply drafted for a newsletter, a bounce or an auto-reply wastes a reviewer's time at best
and starts a mail loop at worst, so anything that looks automated is skipped. The checks
follow the standards machines use to say so (RFC 3834 Auto-Submitted, RFC 2369/2919 list
headers, RFC 3464 delivery reports, the de-facto ``Precedence``) plus the sender names that
never read replies. Old mail gets none either (``Rules.max_age``): a reply weeks late helps nobody,
and a mailbox taken over with its history must not fill the review queue with old questions.

Pure functions over ``MailFacts`` (what the parse stage stored), so every rule is a unit test.
A ``Skip`` has a stable ``rule`` (one of ``SKIP_RULES``, counted by ``mailsense status``) and a
``reason`` for a person. Reasons name headers and rules, never message content: they are logged
and stored in ``draft_skips``.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# Local parts of senders that do not read replies.
_NO_REPLY_LOCAL = re.compile(
    r"^(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]daemon|postmaster|bounces?)(?:[-+_.].*)?$",
    re.IGNORECASE,
)
_BULK_PRECEDENCE = {"bulk", "list", "junk", "auto_reply"}
_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post")
# Vendor headers of auto-responders that do not set Auto-Submitted.
_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response")

SKIP_RULES = (
    "spam",  # the verdict is not ham
    "no_sender",  # no usable From address
    "own_mail",  # one of our own addresses sent it
    "no_reply",  # no-reply, mailer-daemon, postmaster, bounces@ senders
    "report",  # multipart/report: delivery or read reports
    "bounce",  # empty Return-Path
    "automated",  # Auto-Submitted, vendor auto-reply headers
    "mailing_list",  # List-Id, List-Unsubscribe, List-Post
    "bulk",  # Precedence: bulk/list/junk/auto_reply
    "folder",  # not in a folder configured for drafts
    "recipient",  # not addressed to a configured recipient
    "account_off",  # drafts are switched off for the account (decided by the stage)
    "too_old",  # older than [drafts] max_age
)


@dataclass(frozen=True)
class Skip:
    """Why a message gets no draft: a rule from ``SKIP_RULES`` and the reason for a person."""

    rule: str
    reason: str


@dataclass(frozen=True)
class MailFacts:
    """The parts of a stored message that decide eligibility (headers keyed lower-case)."""

    from_addr: str
    to_addrs: Sequence[str] = ()
    headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    folder: str | None = None
    spam_verdict: str | None = None
    sent_at: datetime | None = None  # the Date header, as the parse stage read it
    received_at: datetime | None = None  # when Mailsense stored the message

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def recipients(self) -> set[str]:
        """To and Cc addresses, lower-case (Cc is only in the headers)."""
        found = {a.lower() for a in self.to_addrs}
        for value in self.headers.get("cc", ()):
            found.update(a.lower() for a in _ADDRESS.findall(value))
        return found


_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w.-]+", re.UNICODE)


@dataclass(frozen=True)
class Rules:
    """Per-account drafting rules; empty ``recipients``/``folders`` mean no restriction, no ``max_age`` no limit."""

    own_addresses: frozenset[str] = frozenset()
    recipients: frozenset[str] = frozenset()
    folders: frozenset[str] = frozenset()
    max_age: timedelta | None = None
    draft_unsure: bool = True  # [accounts.drafts] unsure = "draft": the reviewer sees the spam score

    @classmethod
    def build(
        cls,
        own: Iterable[str] = (),
        recipients: Iterable[str] = (),
        folders: Iterable[str] = (),
        max_age: timedelta | None = None,
        draft_unsure: bool = True,
    ) -> Rules:
        return cls(
            frozenset(a.strip().lower() for a in own if a.strip()),
            frozenset(a.strip().lower() for a in recipients if a.strip()),
            frozenset(folders),
            max_age,
            draft_unsure,
        )


def skip(mail: MailFacts, rules: Rules, now: datetime | None = None) -> Skip | None:
    """Why ``mail`` gets no draft, or None when it should get one.

    The age is checked last, so a message that is also a list mail or spam keeps that rule (the
    more telling reason). ``now`` is the clock the age is measured against (tests pass one).
    """
    for check in (_verdict, _sender, _bounce, _automated, _bulk, _scope):
        found = check(mail, rules)
        if found:
            return found
    return _age(mail, rules, now or datetime.now(UTC))


def skip_reason(mail: MailFacts, rules: Rules) -> str | None:
    """``skip(...).reason``: the reason alone."""
    found = skip(mail, rules)
    return found.reason if found else None


def _verdict(mail: MailFacts, rules: Rules) -> Skip | None:
    if mail.spam_verdict == "unsure":
        if rules.draft_unsure:
            return None  # drafted: the reviewer sees the spam score and can junk it
        return Skip("spam", 'spam verdict unsure ([accounts.drafts] unsure = "skip")')
    if mail.spam_verdict not in (None, "ham"):
        return Skip("spam", f"spam verdict {mail.spam_verdict}")
    return None


def _sender(mail: MailFacts, rules: Rules) -> Skip | None:
    sender = (mail.from_addr or "").strip().lower()
    if not sender or "@" not in sender:
        return Skip("no_sender", "no sender address")
    if sender in rules.own_addresses:
        return Skip("own_mail", "our own outgoing mail")
    if _NO_REPLY_LOCAL.match(sender.rsplit("@", 1)[0]):
        return Skip("no_reply", "no-reply or system sender")
    return None


def _bounce(mail: MailFacts, rules: Rules) -> Skip | None:
    content_type = (mail.header("content-type") or "").lower()
    if content_type.startswith("multipart/report"):
        return Skip("report", "delivery or read report (multipart/report)")
    return_path = mail.header("return-path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        return Skip("bounce", "bounce (empty Return-Path)")
    return None


def _automated(mail: MailFacts, rules: Rules) -> Skip | None:
    auto = mail.header("auto-submitted")
    if auto is not None and auto.split(";")[0].strip().lower() != "no":
        return Skip("automated", "automated (Auto-Submitted)")
    for name in _AUTOREPLY_HEADERS:
        if mail.header(name) is not None:
            return Skip("automated", f"automated ({name})")
    return None


def _bulk(mail: MailFacts, rules: Rules) -> Skip | None:
    for name in _LIST_HEADERS:
        if mail.header(name) is not None:
            return Skip("mailing_list", f"mailing list ({name})")
    precedence = (mail.header("precedence") or "").strip().lower()
    if precedence in _BULK_PRECEDENCE:
        return Skip("bulk", f"bulk mail (Precedence: {precedence})")
    return None


def _scope(mail: MailFacts, rules: Rules) -> Skip | None:
    if rules.folders and mail.folder not in rules.folders:
        return Skip("folder", "folder not configured for drafts")
    if rules.recipients and not (mail.recipients() & rules.recipients):
        return Skip("recipient", "not addressed to a drafted address")
    return None


def written_at(mail: MailFacts) -> tuple[datetime, str] | None:
    """When the mail was written, and what says so: the Date header, else the newest Received header
    (the receiving server's clock, set when it arrived), else when Mailsense stored it.

    The Date header comes first because the time of storing is the first connect for mail that
    was already in the mailbox (``[accounts] start_from``), which would make old mail look new.
    """
    if mail.sent_at is not None:
        return _aware(mail.sent_at), "its Date header"
    for value in mail.headers.get("received", ()):
        try:
            parsed = email.utils.parsedate_to_datetime(value.rsplit(";", 1)[-1].strip())
        except (TypeError, ValueError, IndexError):
            continue
        if parsed is not None:
            return _aware(parsed), "its Received header"
    if mail.received_at is not None:
        return _aware(mail.received_at), "when it was received"
    return None


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def _age(mail: MailFacts, rules: Rules, now: datetime) -> Skip | None:
    if rules.max_age is None:
        return None
    found = written_at(mail)
    if found is None:
        return None  # nothing says it is old
    when, source = found
    age = now - when
    if age <= rules.max_age:
        return None  # includes mail dated in the future: a wrong clock is no reason to ignore a person
    return Skip(
        "too_old",
        f"too old for a draft: {_days(age.days)} old by {source} ({when.astimezone(UTC):%Y-%m-%d}), "
        f"max_age {_days(rules.max_age.days)}",
    )
