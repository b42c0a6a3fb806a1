"""Real servers (Dovecot, ...) that tests start on 127.0.0.1 instead of mocking protocols.

Mocked IMAP servers hide exactly the behaviour Mailsense has to cope with in production
(capabilities that change after login, UIDVALIDITY changes, EXPUNGE semantics), so the
integration tests talk to the real thing.
"""

from .dovecot import DEFAULT_USERS, DovecotError, DovecotServer, Recreated

__all__ = ["DEFAULT_USERS", "DovecotError", "DovecotServer", "Recreated"]
