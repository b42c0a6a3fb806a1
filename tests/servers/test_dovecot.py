"""Sanity checks for the real Dovecot test server in ``tests/servers/dovecot.py``.

If these fail, every IMAP integration test would fail for reasons unrelated to Mailsense,
so they pin down the server's contract: ports, TLS with a verifiable cert, STARTTLS,
post-login capabilities, data surviving a restart, and UIDVALIDITY changing on re-creation.
"""

from __future__ import annotations

import imaplib
import socket
import ssl
from collections.abc import Iterator

import pytest

from tests.servers.dovecot import DovecotServer

MESSAGE = (
    b"From: Carol <carol@example.org>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: fixture sanity\r\n"
    b"Message-ID: <sanity-1@example.org>\r\n"
    b"\r\n"
    b"Hello from the Dovecot fixture test.\r\n"
)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    with DovecotServer() as server:
        yield server


def test_append_returns_uid_and_message_round_trips(dovecot: DovecotServer) -> None:
    before = dovecot.uids("alice", "INBOX")
    uid = dovecot.append("alice", "INBOX", MESSAGE, flags=["\\Flagged", "$Important"])
    assert dovecot.uids("alice", "INBOX") == [*before, uid]
    assert dovecot.fetch_raw("alice", "INBOX", uid) == MESSAGE
    # BODY.PEEK must not have set \Seen; \Recent is filtered out.
    assert dovecot.flags("alice", "INBOX", uid) == {"\\Flagged", "$Important"}
    # Users are isolated.
    assert dovecot.uids("bob", "INBOX") == []


def test_special_use_folders(dovecot: DovecotServer) -> None:
    folders = dovecot.list_folders("alice")
    assert {"INBOX", "Junk", "Drafts"} <= set(folders)
    with dovecot.connect("alice") as client:
        typ, data = client.list('""', "*")
    assert typ == "OK"
    listing = b"\n".join(d for d in data if isinstance(d, bytes))
    assert b"\\Junk" in listing and b"\\Drafts" in listing


def test_folder_create_delete_with_non_ascii_name(dovecot: DovecotServer) -> None:
    dovecot.create_folder("alice", "Projekte/Übersicht")
    assert "Projekte/Übersicht" in dovecot.list_folders("alice")
    uid = dovecot.append("alice", "Projekte/Übersicht", MESSAGE)
    assert dovecot.uids("alice", "Projekte/Übersicht") == [uid]
    dovecot.delete_folder("alice", "Projekte/Übersicht")
    assert "Projekte/Übersicht" not in dovecot.list_folders("alice")


def test_implicit_tls_verifies_against_cert_path(dovecot: DovecotServer) -> None:
    ctx = ssl.create_default_context(cafile=str(dovecot.cert_path))
    client = imaplib.IMAP4_SSL(dovecot.host, dovecot.tls_port, ssl_context=ctx, timeout=10)
    try:
        assert client.login("alice", "alicepw")[0] == "OK"
    finally:
        client.logout()
    # The cert also matches the DNS name, for clients configured with host "localhost".
    with (
        socket.create_connection((dovecot.host, dovecot.tls_port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.recv(64).startswith(b"* OK")
    # And a client that does not trust the cert must refuse it.
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(
            dovecot.host, dovecot.tls_port, ssl_context=ssl.create_default_context(), timeout=10
        )


def test_starttls_and_post_login_capabilities(dovecot: DovecotServer) -> None:
    client = imaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    try:
        assert "STARTTLS" in client.capabilities
        # The trap: UIDPLUS/MOVE are not advertised before login.
        assert "UIDPLUS" not in client.capabilities
        client.starttls(ssl_context=ssl.create_default_context(cafile=str(dovecot.cert_path)))
        assert isinstance(client.sock, ssl.SSLSocket)
        client.login("bob", "bobpw")
    finally:
        client.logout()
    with dovecot.connect("bob", starttls=True) as client:
        # connect() re-reads capabilities after login, so UIDPLUS/MOVE are known.
        assert {"UIDPLUS", "MOVE"} <= set(client.capabilities)


def test_restart_keeps_ports_and_data(dovecot: DovecotServer) -> None:
    uid = dovecot.append("bob", "INBOX", MESSAGE, flags=["\\Seen"])
    ports = (dovecot.port, dovecot.tls_port)
    uids = dovecot.uids("bob", "INBOX")
    validity = dovecot.uidvalidity("bob", "INBOX")

    dovecot.restart()

    assert (dovecot.port, dovecot.tls_port) == ports
    assert dovecot.uids("bob", "INBOX") == uids
    assert dovecot.uidvalidity("bob", "INBOX") == validity
    assert dovecot.fetch_raw("bob", "INBOX", uid) == MESSAGE
    assert dovecot.flags("bob", "INBOX", uid) == {"\\Seen"}
    with dovecot.connect("bob", tls=True) as client:  # same cert still verifies
        assert client.noop()[0] == "OK"


@pytest.mark.parametrize("folder", ["Archive", "INBOX"])
def test_recreate_gives_new_uidvalidity_and_same_messages(dovecot: DovecotServer, folder: str) -> None:
    user = "bob"
    if folder != "INBOX":
        dovecot.create_folder(user, folder)
    first = dovecot.append(user, folder, MESSAGE, flags=["\\Seen", "$Junk"])
    second = dovecot.append(user, folder, MESSAGE.replace(b"sanity-1", b"sanity-2"))
    old_uids = dovecot.uids(user, folder)
    old_raw = [dovecot.fetch_raw(user, folder, u) for u in old_uids]

    result = dovecot.recreate_folder_with_same_messages(user, folder)

    assert result.old_uidvalidity != result.new_uidvalidity
    assert dovecot.uidvalidity(user, folder) == result.new_uidvalidity
    assert list(result.uid_map) == old_uids
    new_uids = dovecot.uids(user, folder)
    assert new_uids == list(result.uid_map.values())
    assert [dovecot.fetch_raw(user, folder, u) for u in new_uids] == old_raw
    assert dovecot.flags(user, folder, result.uid_map[first]) == {"\\Seen", "$Junk"}
    assert dovecot.flags(user, folder, result.uid_map[second]) == set()


def test_set_password_takes_effect_immediately(dovecot: DovecotServer) -> None:
    # Kept last: a failed login makes Dovecot's anvil delay the next login from 127.0.0.1.
    dovecot.set_password("carol", "carolpw")
    assert dovecot.uids("carol", "INBOX") == []
    dovecot.set_password("alice", "changed")
    with dovecot.connect("alice") as client:
        assert client.noop()[0] == "OK"
    with pytest.raises(imaplib.IMAP4.error), dovecot.connect("alice", password="alicepw"):
        pass
