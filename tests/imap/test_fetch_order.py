"""FETCH responses whose UID comes after the body (Exchange, mail.ru), or not at all.

Dovecot always sends ``* n FETCH (UID u BODY[] {len}``; a small proxy on 127.0.0.1 between the
client and Dovecot rewrites that into ``* n FETCH (BODY[] {len} ... UID u)`` (or drops the UID),
so the daemon's IMAP code meets those servers' order against a real server. Before the fix every
message looked expunged and was skipped without a word.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from daemon.config import Settings
from daemon.db.session import Database
from daemon.imap import connection
from tests.helpers import make_message, wait_for

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n$")
_UID_FIRST = re.compile(rb"^(\* \d+ FETCH \()UID (\d+) (.*\{(\d+)\}\r\n)$")


class FetchRewritingProxy:
    """TCP proxy to Dovecot's plaintext port that moves (``uid_last``) or drops (``no_uid``) FETCH UIDs."""

    def __init__(self, upstream_port: int, mode: str) -> None:
        assert mode in ("uid_last", "no_uid")
        self.upstream_port, self.mode = upstream_port, mode
        self.rewritten = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            threading.Thread(target=self._rewrite, args=(server, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _rewrite(self, server: socket.socket, client: socket.socket) -> None:
        reader = server.makefile("rb")
        with contextlib.suppress(OSError, ValueError):
            while line := reader.readline():
                uid_first = _UID_FIRST.match(line)
                literal = _LITERAL_AT_END.search(line)
                body = reader.read(int(literal.group(1))) if literal else b""
                if uid_first:
                    trailer = reader.readline()
                    if trailer == b")\r\n":  # one literal only: the shape the daemon's FETCH gets
                        self.rewritten += 1
                        uid = b" UID " + uid_first.group(2) if self.mode == "uid_last" else b""
                        line, trailer = uid_first.group(1) + uid_first.group(3), uid + b")\r\n"
                    client.sendall(line + body + trailer)
                else:
                    client.sendall(line + body)
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def proxy_factory(dovecot) -> Iterator:  # type: ignore[no-untyped-def]
    proxies: list[FetchRewritingProxy] = []

    def factory(mode: str) -> FetchRewritingProxy:
        proxies.append(FetchRewritingProxy(dovecot.port, mode))
        return proxies[-1]

    yield factory
    for proxy in proxies:
        proxy.close()


def test_ingestion_stores_every_message_when_the_uid_follows_the_body(
    daemon_factory, dovecot, mailbox_user: str, db: Database, proxy_factory
):
    proxy = proxy_factory("uid_last")
    before = [make_message(f"before start {i}") for i in range(12)]
    after = [make_message(f"while running {i}") for i in range(8)]
    uids = [dovecot.append(mailbox_user, "INBOX", raw) for raw in before]
    daemon = daemon_factory(account__port=proxy.port, account__tls="none").start()
    daemon.wait_log("running:", 60)
    uids += [dovecot.append(mailbox_user, "INBOX", raw) for raw in after]

    def stored() -> int:
        with db.session() as s:
            return s.execute(text("SELECT count(*) FROM messages")).scalar_one()

    wait_for(lambda: stored() == len(uids), 60, f"{len(uids)} messages stored", daemon.log)
    with db.session() as s:
        rows = dict(s.execute(text("SELECT uid, raw FROM messages")).all())
    assert rows == {uid: dovecot.fetch_raw(mailbox_user, "INBOX", uid) for uid in uids}
    assert proxy.rewritten >= len(uids), "the proxy must really have moved the UIDs behind the bodies"
    assert daemon.terminate() == 0


def _account(dovecot, user: str, port: int):  # type: ignore[no-untyped-def]
    return Settings.model_validate({"accounts": [{
        "name": "test", "host": "127.0.0.1", "port": port, "tls": "none", "user": user,
        "password_env": "MAILSENSE_TEST_PASSWORD", "timeout_seconds": 10,
    }]}).accounts[0]


@pytest.mark.parametrize("mode", ["uid_last", "no_uid"])
def test_fetch_raw_finds_every_message_and_only_the_expunged_are_missing(
    dovecot, mailbox_user: str, proxy_factory, monkeypatch, caplog, mode: str
):
    monkeypatch.setenv("MAILSENSE_TEST_PASSWORD", dovecot.users[mailbox_user])
    proxy = proxy_factory(mode)
    raws = [make_message(f"message {i}") for i in range(4)]
    uids = [dovecot.append(mailbox_user, "INBOX", raw) for raw in raws]
    with dovecot.connect(mailbox_user) as client:  # someone else deletes one message, by UID
        client.select("INBOX")
        client.uid("STORE", str(uids[1]), "+FLAGS.SILENT", "(\\Deleted)")
        assert client.uid("EXPUNGE", str(uids[1]))[0] == "OK"
    expected = {uid: dovecot.fetch_raw(mailbox_user, "INBOX", uid) for uid in uids if uid != uids[1]}

    mailbox = connection.connect(_account(dovecot, mailbox_user, proxy.port))
    try:
        mailbox.client.select("INBOX", readonly=True)
        with caplog.at_level(logging.WARNING, logger="daemon.imap.connection"):
            assert connection.fetch_raw(mailbox, uids) == expected
            assert connection.fetch_raw(mailbox, uids[2:]) == {uid: expected[uid] for uid in uids[2:]}
    finally:
        connection.close(mailbox)
    assert proxy.rewritten >= 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    if mode == "uid_last":
        assert warnings == []  # the UID is there, only later: nothing to warn about
    else:
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once, not per message
        assert "UID" in warnings[0].getMessage()
