"""The ``file`` stage: carry out a spam verdict in the mailbox, exactly once.

The plan (move to Junk, set ``$Junk`` ...) is committed in ``mail_actions`` before the IMAP
command is sent, and marked done after it. A crash in between leaves a pending row; the retry
finds the message already gone from the source folder and present in the target, and only
marks the row done. So a move happens once, whatever crashes.

Workers run stages in threads, and imaplib is not thread-safe, so no IMAP connection is ever
used by two threads at once (see ``_Connections``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from imap_tools import BaseMailBox
from sqlalchemy import DateTime, ForeignKey, String, Text, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from daemon.config import AccountSettings, Settings
from daemon.config.spam import AccountSpamSettings
from daemon.db.base import Base
from daemon.db.tables import Account, Folder, Message
from daemon.errors import describe_error
from daemon.imap import connection, operations
from daemon.pipeline.stage import DependencyDown, Outcome

log = logging.getLogger(__name__)


class MailAction(Base):
    """What we decided to do to a message in its mailbox, and whether it is done."""

    __tablename__ = "mail_actions"

    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(10))
    keyword: Mapped[str | None] = mapped_column(String(100))
    destination: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | done | skipped
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Plan:
    keyword: str | None
    destination: str | None  # a folder name, or "\\Junk" for the account's Junk folder


def plan_for(verdict: str, rules: AccountSpamSettings) -> Plan | None:
    """What a verdict means for the mailbox under the account's rules; None = leave it alone."""
    if verdict == "spam":
        plan = Plan(rules.spam_keyword or None, "\\Junk" if rules.move_spam else None)
    elif verdict == "unsure":
        if rules.unsure_action == "none":
            return None
        plan = Plan(rules.unsure_keyword or None, rules.unsure_folder if rules.unsure_action == "move" else None)
    else:
        plan = Plan(rules.ham_keyword or None, None)
    return plan if (plan.keyword or plan.destination) else None


class MailboxUnreachable(Exception):
    """No connection to the account's server: not the message's fault, so no attempt is spent on it."""


class _Connections:
    """The stage's IMAP connections, each lent to one thread at a time for one message.

    All workers share one stage, each running it in a thread of its own, and imaplib is not
    thread-safe: on a shared connection one thread's SELECT lands between another's identity
    check and its UID MOVE, answers reach the wrong caller, and a message still in INBOX is
    recorded as gone. A lock per account would keep one connection but make every worker wait
    on one slow server. ``threading.local`` would tie connections to the executor's threads,
    which are not the workers, cannot be closed from ``close()``, and grow with the executor
    rather than the work (servers cap connections per user: Dovecot 10, Gmail 15). Lending
    does neither: at most one connection per busy worker and account, all within reach of
    ``close()``; one that failed is closed rather than lent again.
    """

    CHECK_AFTER_IDLE_SECONDS = 60.0  # a connection idle longer is NOOPed before use (servers log out idlers)

    def __init__(self) -> None:
        self._idle: dict[str, list[tuple[BaseMailBox, float]]] = defaultdict(list)
        self._lock = threading.Lock()
        self._closed = False

    @contextmanager
    def lease(self, account: AccountSettings) -> Iterator[BaseMailBox]:
        mailbox = self._take(account)
        try:
            yield mailbox
        except BaseException:  # it may be broken, or mid-command: never lend it again
            connection.close(mailbox)
            raise
        with self._lock:
            if not self._closed:
                self._idle[account.name].append((mailbox, time.monotonic()))
                return
        connection.close(mailbox)

    def _take(self, account: AccountSettings) -> BaseMailBox:
        while True:
            with self._lock:
                if not self._idle[account.name]:
                    break
                mailbox, since = self._idle[account.name].pop()
            if time.monotonic() - since < self.CHECK_AFTER_IDLE_SECONDS or _answers(mailbox):
                return mailbox
            connection.close(mailbox)
        try:
            return connection.connect(account)
        except connection.AuthenticationFailed as exc:
            raise MailboxUnreachable(f"IMAP login of account {account.name} refused ({exc})") from None
        except connection.CONNECTION_ERRORS as exc:
            raise MailboxUnreachable(
                f"IMAP server {account.host}:{account.effective_port} of account {account.name} unreachable "
                f"({type(exc).__name__})"
            ) from None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [mailbox for pool in self._idle.values() for mailbox, _ in pool]
            self._idle.clear()
        for mailbox in idle:
            connection.close(mailbox)


def _answers(mailbox: BaseMailBox) -> bool:
    try:
        return mailbox.client.noop()[0] == "OK"
    except connection.CONNECTION_ERRORS:
        return False


class FileStage:
    name = "file"
    batch_size = 16

    def __init__(self, settings: Settings) -> None:
        self.accounts = {a.name: a for a in settings.accounts}
        self._connections = _Connections()
        self._junk: dict[str, str] = {}

    def waiting_reason(self) -> str | None:
        return None

    def close(self) -> None:
        self._connections.close()

    def process(self, session: Session, messages: list[Message]) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        for message in messages:
            try:
                outcomes[message.id] = self._file(session, message)
            except MailboxUnreachable as exc:
                if session.in_transaction():
                    session.rollback()
                # The rest of the batch waits with the stage; what was filed so far is recorded.
                raise DependencyDown(str(exc), outcomes) from None
            except Exception as exc:
                if session.in_transaction():
                    session.rollback()
                outcomes[message.id] = Outcome.retry(describe_error(exc))
        return outcomes

    def _account_name(self, session: Session, message: Message) -> str:
        return session.execute(select(Account.name).where(Account.id == message.account_id)).scalar_one()

    def _file(self, session: Session, message: Message) -> Outcome:
        verdict = message.spam_verdict or "ham"
        after = Outcome.finish(f"{verdict}: no draft") if verdict != "ham" else Outcome.next()
        with session.begin():
            account = self.accounts.get(self._account_name(session, message))
            if message.source != "imap" or message.uid is None or message.folder_id is None or account is None:
                return after  # nothing to act on: SMTP ingress, imports, or an account no longer configured
            plan = plan_for(verdict, account.spam)
            if plan is None:
                return after
            session.execute(
                insert(MailAction)
                .values(message_id=message.id, verdict=verdict, keyword=plan.keyword, destination=plan.destination)
                .on_conflict_do_nothing(index_elements=["message_id"])
            )
            action = session.get(MailAction, message.id)
            assert action is not None
            if action.status != "pending":
                return after  # done before a crash: never twice
            folder = session.get(Folder, message.folder_id)
            assert folder is not None
            folder_name = folder.name
        status, detail = self._execute(account, message, folder_name, plan)
        with session.begin():
            action = session.get(MailAction, message.id)
            assert action is not None
            action.status, action.detail, action.done_at = status, detail, func.now()
        log.info("message %d (%s): %s%s", message.id, verdict, status, f" ({detail})" if detail else "")
        return after

    def _execute(self, account: AccountSettings, message: Message, folder: str, plan: Plan) -> tuple[str, str]:
        with self._connections.lease(account) as mailbox:
            return self._execute_on(mailbox, account, message, folder, plan)

    def _execute_on(
        self, mailbox: BaseMailBox, account: AccountSettings, message: Message, folder: str, plan: Plan
    ) -> tuple[str, str]:
        destination = plan.destination
        if destination == "\\Junk":
            if account.name not in self._junk:
                self._junk[account.name] = operations.junk_folder(mailbox, account.spam.junk_folder)
            destination = self._junk[account.name]
        elif destination:
            operations.ensure_folder(mailbox, destination)
        target = operations.Target(folder, message.uidvalidity or 0, message.uid or 0, message.message_id,
                                    message.content_sha256)
        uid = operations.locate(mailbox, target)
        if uid is None:
            if destination and operations.is_in_folder(mailbox, destination, target):
                return "done", f"already in {destination}"
            refusal = operations.search_refusal(message.message_id)
            if refusal and message.message_id is not None:
                return "skipped", f"not at its UID in {folder} any more, and {refusal}"
            return "skipped", f"no longer in {folder} (moved or deleted by someone else)"
        if plan.keyword:
            operations.add_keyword(mailbox, uid, plan.keyword)
        if destination and destination != folder:
            operations.move(mailbox, uid, destination)
            return "done", f"moved to {destination}"
        return "done", f"keyword {plan.keyword}"
