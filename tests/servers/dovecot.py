"""A real, throw-away Dovecot 2.3 IMAP server for tests, plus a small test-side IMAP client.

Why a real server: the IMAP behaviour Mailsense must survive (capabilities that only appear
after login, APPENDUID/UIDPLUS, UIDVALIDITY changes, STARTTLS vs implicit TLS, special-use
folders) is exactly what a mock gets wrong. Dovecot starts in ~0.2 s, so one server per test
module (or session) is cheap.

Why the helpers use plain :mod:`imaplib`: they must be independent of the daemon's own IMAP
code, otherwise a bug there would be mirrored by the very tool meant to catch it.

Facts this module is built on (see ``/work/shared/notes/test-servers.md``):

* As root, Dovecot refuses to run logins as root and mail must belong to a non-root uid
  (``nobody:nogroup`` here), and every parent of the mail directory must be enterable by that
  uid. ``pytest``'s ``tmp_path`` base is mode 0700, hence ``tempfile.mkdtemp()`` + ``0711``.
* Dovecot's pre-login CAPABILITY lacks UIDPLUS/MOVE and imaplib never re-reads it, so the
  client here re-reads capabilities after login, and never sends a plain ``EXPUNGE`` (which
  would expunge *every* ``\\Deleted`` message in the folder, not only ours).
"""

from __future__ import annotations

import atexit
import contextlib
import imaplib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from imap_tools.imap_utf7 import utf7_decode, utf7_encode

__all__ = ["DEFAULT_USERS", "DovecotError", "DovecotServer", "Recreated"]

DEFAULT_USERS: Mapping[str, str] = {"alice": "alicepw", "bob": "bobpw"}

_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_UIDVALIDITY_RE = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID_RE = re.compile(rb"\bUID (\d+)")
_FETCH_FLAGS_RE = re.compile(rb"\bFLAGS \(([^)]*)\)")
_FETCH_INTERNALDATE_RE = re.compile(rb'\bINTERNALDATE ("[^"]*")')
_LIST_RE = re.compile(rb'^\((?P<attrs>[^)]*)\) (?P<delim>"(?:[^"\\]|\\.)*"|NIL) (?P<name>.*)$')

# Users that exist on Debian with dovecot-imapd installed; only used when running as root.
_ROOT_MAIL_USER = ("nobody", "nogroup")


class DovecotError(RuntimeError):
    """Dovecot failed to start/stop, or an IMAP helper command was refused."""


class Recreated(NamedTuple):
    """Result of :meth:`DovecotServer.recreate_folder_with_same_messages`."""

    old_uidvalidity: int
    new_uidvalidity: int
    uid_map: dict[int, int]
    """Old UID -> new UID, in the original order of the messages."""


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for `count` distinct free TCP ports on 127.0.0.1.

    All sockets are held open until every port is chosen so the same port is never returned
    twice. There is a small race until Dovecot binds them; acceptable for tests.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _quote_mailbox(name: str) -> str:
    """Encode a folder name for an IMAP command: modified UTF-7, then a quoted string.

    imaplib sends arguments verbatim, so names with spaces or non-ASCII would otherwise break.
    """
    encoded = utf7_encode(name).decode("ascii")
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote_mailbox(raw: bytes) -> str:
    if raw.startswith(b'"') and raw.endswith(b'"') and len(raw) >= 2:
        raw = re.sub(rb"\\(.)", rb"\1", raw[1:-1])
    return utf7_decode(raw)


def _check(typ: str, data: list[Any], what: str) -> list[Any]:
    """imaplib reports NO as a return value, not an exception; turn it into one."""
    if typ != "OK":
        raise DovecotError(f"IMAP {what} failed: {typ} {data!r}")
    return data


# Servers still running at interpreter exit (e.g. a fixture that never reached close()).
_LIVE: weakref.WeakSet[DovecotServer] = weakref.WeakSet()


@atexit.register
def _close_leftovers() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


class DovecotServer:
    """One private Dovecot instance listening on 127.0.0.1 (IMAP + STARTTLS, and IMAPS).

    Everything (config, passwd file, cert, Maildirs, sockets, state, log) lives in one
    ``mkdtemp`` directory, so several instances can run side by side and ``close()`` leaves
    nothing behind. Ports are chosen once and kept across :meth:`restart`, so a client under
    test can reconnect to the same address, as it would after a real server restart.

    Typical use::

        with DovecotServer() as srv:
            uid = srv.append("alice", "INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
    """

    host: str = "127.0.0.1"

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        start_timeout: float = 10.0,
        dovecot_bin: str = "dovecot",
    ) -> None:
        """Prepare (but do not start) a server.

        `users` maps user name to plaintext password (default alice/alicepw, bob/bobpw).
        """
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.start_timeout = start_timeout
        self.dovecot_bin = dovecot_bin
        self.dir = Path(tempfile.mkdtemp(prefix="mailsense-dovecot-"))
        # mkdtemp makes 0700; the mail uid (nobody) and Dovecot's internal users must enter it.
        self.dir.chmod(0o711)
        self.instance_name = f"mailsense-test-{self.dir.name}"
        self.conf_path = self.dir / "dovecot.conf"
        self.passwd_path = self.dir / "passwd"
        self.cert_path = self.dir / "cert.pem"
        self.key_path = self.dir / "key.pem"
        self.log_path = self.dir / "dovecot.log"
        self.stdout_path = self.dir / "dovecot.stdout"
        self.mail_root = self.dir / "mail"
        self.port, self.tls_port = _free_ports(2)
        self._proc: subprocess.Popen[bytes] | None = None
        self._passwd_mtime = 0
        self._as_root = os.geteuid() == 0
        if self._as_root:
            import grp
            import pwd

            self._mail_uid = pwd.getpwnam(_ROOT_MAIL_USER[0]).pw_uid
            self._mail_gid = grp.getgrnam(_ROOT_MAIL_USER[1]).gr_gid
        else:
            self._mail_uid, self._mail_gid = os.getuid(), os.getgid()
        try:
            for sub in ("run", "state", "mail"):
                (self.dir / sub).mkdir(mode=0o755)
            self.dir.joinpath("run").chmod(0o755)  # umask-proof: login processes connect here
            self.mail_root.chmod(0o755)
            self._make_cert()
            for user in self.users:
                self._make_maildir(user)
            self._write_passwd()
            self._write_conf()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<DovecotServer {self.host}:{self.port} tls={self.tls_port} {state} dir={self.dir}>"

    # ------------------------------------------------------------------ setup files

    def _make_cert(self) -> None:
        """Self-signed cert valid for both ``localhost`` and ``127.0.0.1``.

        Generated once per server (not per start) so that a client that pinned `cert_path`
        still verifies after :meth:`restart`.
        """
        cmd = [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(self.key_path), "-out", str(self.cert_path),
            "-days", "3650", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, check=False)
        if res.returncode != 0:
            raise DovecotError(f"openssl failed: {res.stderr.decode(errors='replace')}")
        self.key_path.chmod(0o600)

    def _make_maildir(self, user: str) -> None:
        home = self.mail_root / user
        for sub in ("", "Maildir", "Maildir/cur", "Maildir/new", "Maildir/tmp"):
            path = home / sub if sub else home
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, self._mail_uid, self._mail_gid)

    def _write_passwd(self) -> None:
        """Rewrite the passwd file so Dovecot's auth process is sure to notice.

        Dovecot re-reads a passwd-file only when its mtime (whole seconds) or size changed,
        so the mtime is forced to a strictly increasing value; the write goes through a
        rename so the auth process never sees a half-written file.
        """
        lines = []
        for user, password in self.users.items():
            if any(c in user + password for c in ":\n"):
                raise ValueError(f"user/password must not contain ':' or newlines: {user!r}")
            lines.append(f"{user}:{{PLAIN}}{password}::::{self.mail_root / user}\n")
        tmp = self.passwd_path.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        tmp.chmod(0o644)
        self._passwd_mtime = max(int(time.time()), self._passwd_mtime + 1)
        os.utime(tmp, (self._passwd_mtime, self._passwd_mtime))
        tmp.replace(self.passwd_path)

    def _write_conf(self) -> None:
        d = self.dir
        if self._as_root:
            # imap-login refuses root; auth must read files in our dir whatever their owner.
            privileges = """\
default_internal_user = dovecot
default_login_user = dovenull
service auth {
  user = root
}
service auth-worker {
  user = root
}
"""
            uid, gid = _ROOT_MAIL_USER
            chroot = ""
        else:
            import grp
            import pwd

            me = pwd.getpwuid(os.getuid()).pw_name
            my_group = grp.getgrgid(os.getgid()).gr_name
            privileges = (
                f"default_internal_user = {me}\ndefault_internal_group = {my_group}\n"
                f"default_login_user = {me}\n"
            )
            uid, gid = str(os.getuid()), str(os.getgid())
            chroot = "  chroot =\n"  # chroot needs root
            privileges += "service anvil {\n  chroot =\n}\n"
        conf = f"""\
# Generated by tests/servers/dovecot.py for one throw-away test server.
instance_name = {self.instance_name}
base_dir = {d}/run
state_dir = {d}/state
protocols = imap
listen = 127.0.0.1
log_path = {self.log_path}
auth_verbose = yes
# The imap processes' titles show the command in progress: tests wait for a session to be in IDLE.
verbose_proctitle = yes
{privileges}
ssl = yes
ssl_cert = <{self.cert_path}
ssl_key = <{self.key_path}
# Plaintext IMAP must accept LOGIN so tests can exercise the non-TLS path too.
disable_plaintext_auth = no
auth_mechanisms = plain login
# A failed login normally stalls 2 s; tests of wrong passwords should not. (Anvil's per-IP
# auth penalty still delays the *next* login from 127.0.0.1 by ~4 s; it cannot be disabled.)
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_path}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail_root}/%u
}}
mail_location = maildir:~/Maildir
# Test data is disposable; skipping fsync keeps appends fast.
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    special_use = \\Junk
    auto = create
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = create
  }}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
}}
protocol imap {{
  # Default is 10 per user+IP: the daemon, IDLE watchers and test helpers easily exceed it.
  mail_max_userip_connections = 1000
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port}
    ssl = yes
  }}
}}
"""
        self.conf_path.write_text(conf)

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """Last `lines` of Dovecot's log (and its stdout/stderr), for failure messages."""
        parts = []
        for path in (self.stdout_path, self.log_path):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                if text:
                    parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no Dovecot output)"

    def start(self) -> None:
        """Start ``dovecot -F`` and wait until it serves an IMAP greeting on `port`."""
        if self.running:
            return
        self._wait_ports_free(timeout=self.start_timeout)
        with open(self.stdout_path, "ab") as out:
            # Own session: Ctrl-C in pytest does not kill it behind our back, and on a stuck
            # shutdown we can kill the whole group (master + login/auth children) at once.
            self._proc = subprocess.Popen(
                [self.dovecot_bin, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise DovecotError(f"dovecot exited with {code} during start\n{self.log_tail()}")
            if self._greets() and _port_accepts(self.host, self.tls_port):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(f"dovecot not ready after {self.start_timeout}s\n{self.log_tail()}")
            time.sleep(0.05)

    def _greets(self) -> bool:
        """True once the plaintext port answers ``* OK`` (login + auth services are up)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as s:
                return s.recv(256).startswith(b"* OK")
        except OSError:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the master, wait for it to exit and for both ports to be free again.

        Waiting for the ports matters because :meth:`restart` binds the very same ports.
        """
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self._proc = None
        _LIVE.discard(self)
        # Dovecot's master leaves running imap/log/stats processes behind; a stop that keeps client
        # sessions alive is not an outage. Kill them, as a crash or reboot of the server would.
        subprocess.run(["pkill", "-KILL", "-f", f"dovecot-{self.instance_name}/"], check=False)
        self._wait_ports_free(timeout=timeout)

    def _wait_ports_free(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(_port_accepts(self.host, p, timeout=0.2) for p in (self.port, self.tls_port)):
            if time.monotonic() > deadline:
                raise DovecotError(f"ports {self.port}/{self.tls_port} still in use after {timeout}s")
            time.sleep(0.05)

    def restart(self) -> None:
        """Stop and start again on the same ports, with the same users, cert and mail."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its directory (idempotent)."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ users

    def idling(self, user: str) -> int:
        """How many of ``user``'s IMAP sessions are in IDLE now (read from the imap processes' titles)."""
        prefix = f"dovecot-{self.instance_name}/imap [{user} "
        count = 0
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                title = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:  # the process has gone
                continue
            count += title.startswith(prefix) and title.endswith(" IDLE]")
        return count

    def set_password(self, user: str, password: str) -> None:
        """Change `user`'s password, or add the user (with a Maildir) if unknown.

        Dovecot stats the passwd file at most once per second, so a change written in the
        same second as an earlier login could be ignored; when the server is running we
        therefore wait for the next second before returning. New logins then see the new
        password; already authenticated sessions are unaffected (as on a real server).
        """
        if user not in self.users:
            self._make_maildir(user)
        self.users[user] = password
        self._write_passwd()
        if self.running:
            now = time.time()
            time.sleep(int(now) + 1 - now + 0.05)

    # ------------------------------------------------------------------ test-side client

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts this server's self-signed cert."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    @contextlib.contextmanager
    def connect(
        self,
        user: str | None = None,
        password: str | None = None,
        *,
        tls: bool = False,
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> Iterator[imaplib.IMAP4]:
        """An imaplib client, logged in as `user` unless `user` is None.

        `tls` uses implicit TLS on `tls_port`, `starttls` upgrades the plaintext port; both
        verify the certificate. After login the capabilities are re-read, because Dovecot
        only advertises UIDPLUS/MOVE post-login and imaplib would otherwise never know.
        """
        if tls and starttls:
            raise ValueError("choose implicit TLS (tls=True) or STARTTLS, not both")
        client: imaplib.IMAP4
        if tls:
            client = imaplib.IMAP4_SSL(
                self.host, self.tls_port, ssl_context=self.ssl_context(), timeout=timeout
            )
        else:
            client = imaplib.IMAP4(self.host, self.port, timeout=timeout)
        try:
            if starttls:
                _check(*client.starttls(ssl_context=self.ssl_context()), "STARTTLS")
            if user is not None:
                pw = self.users[user] if password is None else password
                client.login(user, pw)
                typ, data = client.capability()
                _check(typ, data, "CAPABILITY")
                client.capabilities = tuple(data[-1].decode().upper().split())
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    @contextlib.contextmanager
    def _selected(self, user: str, folder: str, *, readonly: bool = True) -> Iterator[imaplib.IMAP4]:
        with self.connect(user) as client:
            _check(*client.select(_quote_mailbox(folder), readonly=readonly), f"SELECT {folder}")
            yield client

    def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        *,
        internaldate: str | None = None,
    ) -> int:
        """APPEND `raw` to `folder` and return its UID (from the APPENDUID response code).

        `internaldate` is an IMAP date-time string (e.g. ``"01-Jan-2024 10:00:00 +0000"``).
        Note: imaplib converts bare LF line endings to CRLF, as IMAP requires.
        """
        flag_list = " ".join(flags)
        date = None if internaldate is None else '"' + internaldate.strip('"') + '"'
        with self.connect(user) as client:
            typ, data = client.append(
                _quote_mailbox(folder), f"({flag_list})" if flag_list else None, date, raw
            )
            _check(typ, data, f"APPEND to {folder}")
        for item in data:
            m = _APPENDUID_RE.search(item if isinstance(item, bytes) else b"")
            if m:
                return int(m.group(2))
        raise DovecotError(f"APPEND to {folder} gave no APPENDUID: {data!r}")

    def uids(self, user: str, folder: str) -> list[int]:
        """All UIDs in `folder`, ascending."""
        with self._selected(user, folder) as client:
            data = _check(*client.uid("SEARCH", "ALL"), f"UID SEARCH in {folder}")
        return sorted(int(x) for x in (data[0] or b"").split())

    def _fetch(self, client: imaplib.IMAP4, uid_set: str, items: str) -> list[tuple[bytes, bytes | None]]:
        """UID FETCH returning (header, literal-or-None) per message."""
        data = _check(*client.uid("FETCH", uid_set, items), f"UID FETCH {uid_set}")
        out: list[tuple[bytes, bytes | None]] = []
        for item in data:
            if isinstance(item, tuple):
                out.append((item[0], item[1]))
            elif isinstance(item, bytes) and _FETCH_UID_RE.search(item):
                out.append((item, None))
        return out

    def fetch_raw(self, user: str, folder: str, uid: int) -> bytes:
        """The full RFC 822 message (CRLF line endings), fetched with BODY.PEEK (no \\Seen)."""
        with self._selected(user, folder) as client:
            for header, literal in self._fetch(client, str(uid), "(UID BODY.PEEK[])"):
                m = _FETCH_UID_RE.search(header)
                if m and int(m.group(1)) == uid and literal is not None:
                    return literal
        raise KeyError(f"no UID {uid} in {user}/{folder}")

    def flags(self, user: str, folder: str, uid: int) -> set[str]:
        """Flags and keywords of one message, without the session-dependent ``\\Recent``."""
        with self._selected(user, folder) as client:
            for header, _ in self._fetch(client, str(uid), "(UID FLAGS)"):
                m_uid, m_flags = _FETCH_UID_RE.search(header), _FETCH_FLAGS_RE.search(header)
                if m_uid and m_flags and int(m_uid.group(1)) == uid:
                    return {f for f in m_flags.group(1).decode().split() if f != "\\Recent"}
        raise KeyError(f"no UID {uid} in {user}/{folder}")

    def uidvalidity(self, user: str, folder: str) -> int:
        with self.connect(user) as client:
            data = _check(*client.status(_quote_mailbox(folder), "(UIDVALIDITY)"), f"STATUS {folder}")
        m = _UIDVALIDITY_RE.search(data[0] or b"")
        if not m:
            raise DovecotError(f"STATUS {folder} gave no UIDVALIDITY: {data!r}")
        return int(m.group(1))

    def create_folder(self, user: str, folder: str) -> None:
        with self.connect(user) as client:
            _check(*client.create(_quote_mailbox(folder)), f"CREATE {folder}")

    def delete_folder(self, user: str, folder: str) -> None:
        with self.connect(user) as client:
            _check(*client.delete(_quote_mailbox(folder)), f"DELETE {folder}")

    def list_folders(self, user: str) -> list[str]:
        """Names of all folders of `user` (``/``-separated, decoded from modified UTF-7)."""
        with self.connect(user) as client:
            data = _check(*client.list('""', "*"), "LIST")
        names: list[str] = []
        for item in data:
            if isinstance(item, tuple):  # name sent as a literal: (b'(..) "/" {n}', b'name')
                names.append(utf7_decode(item[1]))
                continue
            m = _LIST_RE.match(item) if item else None
            if m:
                names.append(_unquote_mailbox(m.group("name")))
        return names

    def recreate_folder_with_same_messages(self, user: str, folder: str) -> Recreated:
        """Re-create `folder` with the same messages, so it gets a NEW UIDVALIDITY.

        This is what a client sees when a folder is deleted and restored, or a server's
        index is rebuilt: every cached UID becomes meaningless. Flags (except ``\\Recent``)
        and INTERNALDATEs are preserved; the messages get new UIDs.

        A new folder's UIDVALIDITY is clock-based; Dovecot 2.3 keeps a per-user counter
        (``Maildir/dovecot-uidvalidity``) so delete+create in the same second still gets a new
        value (observed: +1), but that is an implementation detail, so we check and retry
        after a pause if the old value came back. Non-INBOX folders restart at UID 1, i.e.
        the *same* UID numbers now name possibly different messages: the nasty case a
        client must handle. INBOX cannot be deleted, so its messages are UID EXPUNGEd and
        ``doveadm mailbox update --uid-validity`` assigns a new value; there the new UIDs
        continue after the old ones.
        """
        old_validity = self.uidvalidity(user, folder)
        with self._selected(user, folder) as client:
            fetched = self._fetch(client, "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        messages: list[tuple[int, list[str], str | None, bytes]] = []
        for header, literal in fetched:
            m_uid = _FETCH_UID_RE.search(header)
            if m_uid is None or literal is None:
                continue
            m_flags = _FETCH_FLAGS_RE.search(header)
            m_date = _FETCH_INTERNALDATE_RE.search(header)
            flags = [f for f in (m_flags.group(1).decode().split() if m_flags else []) if f != "\\Recent"]
            messages.append(
                (int(m_uid.group(1)), flags, m_date.group(1).decode() if m_date else None, literal)
            )
        messages.sort(key=lambda msg: msg[0])

        if folder.upper() == "INBOX":
            self._empty_inbox_with_new_uidvalidity(user, [uid for uid, *_ in messages], old_validity)
        else:
            for _attempt in range(5):
                self.delete_folder(user, folder)
                self.create_folder(user, folder)
                if self.uidvalidity(user, folder) != old_validity:
                    break
                time.sleep(1.1)
            else:
                raise DovecotError(f"UIDVALIDITY of {user}/{folder} stayed {old_validity}")

        uid_map = {
            uid: self.append(user, folder, raw, flags, internaldate=date)
            for uid, flags, date, raw in messages
        }
        new_validity = self.uidvalidity(user, folder)
        if new_validity == old_validity:
            raise DovecotError(f"UIDVALIDITY of {user}/{folder} did not change ({old_validity})")
        return Recreated(old_validity, new_validity, uid_map)

    def _empty_inbox_with_new_uidvalidity(self, user: str, uids: list[int], old_validity: int) -> None:
        if uids:
            uid_set = ",".join(map(str, uids))
            with self._selected(user, "INBOX", readonly=False) as client:
                _check(*client.uid("STORE", uid_set, "+FLAGS.SILENT", "(\\Deleted)"), "UID STORE")
                # UID EXPUNGE, never plain EXPUNGE: only the messages we fetched go away.
                _check(*client.uid("EXPUNGE", uid_set), "UID EXPUNGE")
        new_validity = max(int(time.time()), old_validity + 1)
        res = subprocess.run(
            ["doveadm", "-c", str(self.conf_path), "mailbox", "update", "-u", user,
             "--uid-validity", str(new_validity), "INBOX"],
            capture_output=True, check=False,
        )  # fmt: skip
        if res.returncode != 0:
            raise DovecotError(f"doveadm mailbox update failed: {res.stderr.decode(errors='replace')}")
