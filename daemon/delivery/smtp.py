"""Sending one reply through the account's submission server, in two steps around the point of no return.

``Submission.prepare`` connects, authenticates and names sender and recipients; nothing has left
yet, and a failure here is safe to retry. The caller records that DATA begins and then calls
``send``: from that moment until the server's answer the message may or may not be out, which is
why the deliverer never resends a draft whose attempt stopped in between (see ``daemon.delivery.deliver``).
"""

from __future__ import annotations

import contextlib
import smtplib
from types import TracebackType

from daemon.config import AccountSettings
from daemon.imap.connection import ssl_context


class Refused(Exception):
    """The server refused the message for good (5xx): retrying the same bytes will not help."""


class NotSent(Exception):
    """The server answered DATA with a temporary failure (4xx): the message is not out; retry later."""


class Submission:
    """One SMTP session for one message; raises ``Refused`` on 5xx, smtplib/OSError errors otherwise."""

    def __init__(self, account: AccountSettings) -> None:
        self.account = account
        self.settings = account.delivery
        self.client: smtplib.SMTP | None = None

    def __enter__(self) -> Submission:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.quit()
            with contextlib.suppress(Exception):
                self.client.close()

    def prepare(self, sender: str, recipients: list[str]) -> None:
        s, timeout = self.settings, self.account.timeout_seconds
        host, port = s.smtp_host, s.effective_smtp_port
        if s.smtp_tls == "implicit":
            self.client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl_context(self.account))
        else:
            self.client = smtplib.SMTP(host, port, timeout=timeout)
        client = self.client
        client.ehlo()
        if s.smtp_tls == "starttls":
            client.starttls(context=ssl_context(self.account))
            client.ehlo()
        if s.smtp_user:
            try:
                client.login(s.smtp_user, self.account.smtp_password())
            except smtplib.SMTPAuthenticationError:
                raise smtplib.SMTPException(f"SMTP login refused for user {s.smtp_user!r} on {host}:{port}") from None
        code, answer = client.mail(sender)
        self._check(code, answer, "MAIL FROM")
        for recipient in recipients:
            code, answer = client.rcpt(recipient)
            self._check(code, answer, f"RCPT TO {recipient}")

    def send(self, raw: bytes) -> None:
        """Hand the message over; Refused/NotSent when the server said no, anything else leaves it unknown."""
        assert self.client is not None, "prepare() first"
        try:
            self.client.data(raw)
        except smtplib.SMTPResponseException as exc:  # an answer: the message was not taken
            text = exc.smtp_error.decode("utf-8", "replace")[:200] if isinstance(exc.smtp_error, bytes) else ""
            if exc.smtp_code >= 500:
                raise Refused(f"DATA refused: {exc.smtp_code} {text}") from None
            raise NotSent(f"DATA not accepted: {exc.smtp_code} {text}") from None

    @staticmethod
    def _check(code: int, answer: bytes, what: str) -> None:
        if 200 <= code < 300:
            return
        text = answer.decode("utf-8", "replace")[:200]
        if code >= 500:
            raise Refused(f"{what} refused: {code} {text}")
        raise smtplib.SMTPResponseException(code, f"{what}: {text}")
