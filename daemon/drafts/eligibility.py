"""Who gets a draft: a person who wrote to us, not a machine, a list or ourselves.

A reply drafted for a newsletter, a bounce or an auto-reply wastes a reviewer's time at best
and starts a mail loop at worst, so anything that looks automated is skipped. The checks
follow the standards machines use to say so (RFC 3834 Auto-Submitted, RFC 2369/2919 list
headers, RFC 3464 delivery reports, the de-facto ``Precedence``) plus the sender names that
never read replies.

Pure functions over ``MailFacts`` (what the parse stage stored), so every rule is a unit test.
A ``Skip`` has a stable ``rule`` (one of ``SKIP_RULES``, counted by ``mailsense status``) and a
``reason`` for a person. Reasons name headers and rules, never message content: they are logged
and stored in ``draft_skips``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
    """Per-account drafting rules; empty ``recipients``/``folders`` mean no restriction."""

    own_addresses: frozenset[str] = frozenset()
    recipients: frozenset[str] = frozenset()
    folders: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls, own: Iterable[str] = (), recipients: Iterable[str] = (), folders: Iterable[str] = ()
    ) -> Rules:
        return cls(
            frozenset(a.strip().lower() for a in own if a.strip()),
            frozenset(a.strip().lower() for a in recipients if a.strip()),
            frozenset(folders),
        )


def skip(mail: MailFacts, rules: Rules) -> Skip | None:
    """Why ``mail`` gets no draft, or None when it should get one."""
    for check in (_verdict, _sender, _bounce, _automated, _bulk, _scope):
        found = check(mail, rules)
        if found:
            return found
    return None


def skip_reason(mail: MailFacts, rules: Rules) -> str | None:
    """``skip(...).reason``: the reason alone."""
    found = skip(mail, rules)
    return found.reason if found else None


def _verdict(mail: MailFacts, rules: Rules) -> Skip | None:
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
