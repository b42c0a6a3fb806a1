"""IDLE wakes up for lines that arrive in the same TCP packet (or TLS record) as others.

imaplib reads through a buffered file over the socket: one read can take several lines, and
those after the first wait in that buffer, where ``select`` on the socket does not see them. A
loopback server sends exactly such packets, so the test does not depend on how Dovecot happens
to split its writes. Both a plain and a TLS connection are covered: their sockets report
"nothing to read yet" differently (no data vs. ``SSLWantReadError``).
"""

from __future__ import annotations

import imaplib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from daemon.config import AccountSettings
from daemon.ingest.imap import FolderWatcher
from tests.helpers import free_port

GREETING = b"* OK loopback ready\r\n"


class IdleResponder:
    """A one-connection IMAP server that answers IDLE with scripted writes, one ``sendall`` each.

    A pause separates the writes, so each leaves as its own packet; within one write, lines
    share a packet. Whatever the client sends is kept in ``received``.
    """

    def __init__(self, idle_writes: list[bytes], tls: ssl.SSLContext | None) -> None:
        self.idle_writes = idle_writes
        self.tls = tls
        self.received: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", free_port()))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(30)
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True)
        with conn, conn.makefile("rb") as lines:
            conn.sendall(GREETING)
            idle_tag = b""
            for line in lines:
                self.received.append(line.rstrip(b"\r\n"))
                tag, _, command = line.rstrip(b"\r\n").partition(b" ")
                if command.upper() == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY IMAP4rev1 IDLE\r\n" + tag + b" OK Capability completed.\r\n")
                elif command.upper() == b"IDLE":
                    idle_tag = tag
                    for write in self.idle_writes:
                        conn.sendall(write)
                        time.sleep(0.3)
                elif tag.upper() == b"DONE":
                    conn.sendall(idle_tag + b" OK Idle completed.\r\n")
                elif command.upper() == b"LOGOUT":
                    conn.sendall(b"* BYE Logging out\r\n" + tag + b" OK Logout completed.\r\n")
                    return

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) around a throwaway self-signed certificate for 127.0.0.1."""
    tmp: Path = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


@pytest.fixture(params=["plain", "tls"])
def connect(request: pytest.FixtureRequest, tls_pair: tuple[ssl.SSLContext, ssl.SSLContext]) -> Iterator:  # type: ignore[type-arg]
    """connect(idle_writes) -> (responder, imaplib client), over plain TCP or TLS."""
    opened: list[tuple[IdleResponder, imaplib.IMAP4]] = []

    def open_(idle_writes: list[bytes]) -> tuple[IdleResponder, imaplib.IMAP4]:
        if request.param == "tls":
            responder = IdleResponder(idle_writes, tls_pair[0])
            client: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", responder.port, ssl_context=tls_pair[1],
                                                      timeout=10)
        else:
            responder = IdleResponder(idle_writes, None)
            client = imaplib.IMAP4("127.0.0.1", responder.port, timeout=10)
        opened.append((responder, client))
        return responder, client

    yield open_
    for responder, client in opened:
        try:
            client.logout()
        finally:
            responder.close()


def idle_in_thread(client: imaplib.IMAP4, stop: threading.Event) -> threading.Thread:
    """Run ``FolderWatcher._idle`` as the watcher thread does, with a renewal far beyond the test's waits."""
    account = AccountSettings(name="loopback", host="127.0.0.1", user="u", password_env="UNUSED",
                              idle_renew_seconds=60)
    watcher = FolderWatcher(account, "INBOX", db=None, stop=stop)  # type: ignore[arg-type]  # _idle needs no db
    thread = threading.Thread(target=watcher._idle, args=(SimpleNamespace(client=client),), daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    "idle_writes",
    [
        pytest.param([b"+ idling\r\n* 5 EXISTS\r\n"], id="exists-with-continuation"),
        # Dovecot's keepalive, then new mail: the first line is no activity, the second is.
        pytest.param([b"+ idling\r\n", b"* OK Still here\r\n* 4 EXISTS\r\n"], id="exists-after-keepalive"),
        pytest.param([b"+ idling\r\n", b"* OK Still here\r\n* 3 EXPUNGE\r\n"], id="expunge-after-keepalive"),
    ],
)
def test_idle_wakes_up_for_a_line_that_shared_a_packet(connect, idle_writes: list[bytes]) -> None:
    responder, client = connect(idle_writes)
    stop = threading.Event()
    thread = idle_in_thread(client, stop)
    thread.join(10)  # the renewal is 60 s away: only the announcement can end IDLE this soon
    woke_up = not thread.is_alive()
    stop.set()
    thread.join(5)
    assert woke_up, "IDLE slept through a line that arrived in the same packet as another"
    assert responder.received[-1] == b"DONE"  # IDLE was ended properly: the connection stays usable


def test_idle_without_news_keeps_waiting_and_honours_stop(connect) -> None:
    # The "anything buffered?" check must neither block nor take a line away from imaplib.
    responder, client = connect([b"+ idling\r\n", b"* OK Still here\r\n"])
    stop = threading.Event()
    thread = idle_in_thread(client, stop)
    thread.join(2.5)
    assert thread.is_alive(), "IDLE ended without news"
    stop.set()
    thread.join(5)
    assert not thread.is_alive(), "IDLE did not notice the stop flag"
    assert responder.received[-1] == b"DONE"
    assert client.sock.gettimeout() == 10  # the non-blocking peeks gave the socket its timeout back
