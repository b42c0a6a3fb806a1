"""What keeps the review page for the reviewer alone: login, session key, CSRF, origin and host checks.

The page can approve replies that go out under the company's name, so every request is treated as
hostile until shown otherwise:

- a login (the configured user name and password, compared in constant time) gives a session
  cookie signed with a key that never leaves the server (HttpOnly, SameSite=Strict);
- the session remembers a fingerprint of the password it was opened with: changing the password
  ends every open session;
- every POST carries the session's CSRF token in a hidden field, and its ``Origin`` (or, without
  one, its ``Referer``) must be this page itself;
- the ``Host`` header must name this server (localhost, the listen address or a configured name),
  which defeats DNS rebinding;
- failed logins are throttled per client.

Pure helpers with no framework state; ``daemon.web.app`` applies them to each request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import deque
from pathlib import Path
from urllib.parse import urlsplit

from daemon.config import ConfigError, read_secret_file
from daemon.config.web import WebSettings

SECRET_KEY_NAME = "web-secret-key"
MIN_SECRET_KEY_LENGTH = 32
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def session_secret(settings: WebSettings, state_dir: Path) -> str:
    """The key that signs session cookies: from ``secret_key_file``, else generated once in the state dir.

    A generated key survives restarts (logins stay valid) and is created with mode 0600 in one step,
    so no other user ever sees it, not even for a moment.
    """
    if settings.secret_key_file:
        key = read_secret_file("web.secret_key_file", settings.secret_key_file)
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise ConfigError(f"web.secret_key_file: the key is shorter than {MIN_SECRET_KEY_LENGTH} characters; "
                              "generate one with `openssl rand -hex 32`")
        return key
    path = state_dir / SECRET_KEY_NAME
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"web.secret_key_file: cannot read the generated key {path}: {exc.strerror}") from None
    key = secrets.token_hex(32)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"web.secret_key_file: cannot create {path}: {exc.strerror}; set web.secret_key_file "
                          "or make daemon.state_dir writable") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def credentials_match(settings: WebSettings, username: str, password: str) -> bool:
    """Both compared in constant time (on digests, so not even the length leaks); both always compared."""
    name_ok = hmac.compare_digest(_digest(username), _digest(settings.username))
    password_ok = hmac.compare_digest(_digest(password), _digest(settings.password()))
    return name_ok & password_ok


def password_fingerprint(secret_key: str, password: str) -> str:
    """Kept in the session: a changed password no longer matches it, and the session ends."""
    return hmac.new(secret_key.encode(), b"password:" + password.encode(), hashlib.sha256).hexdigest()[:32]


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_token_matches(expected: object, given: object) -> bool:
    return (isinstance(expected, str) and isinstance(given, str) and bool(expected)
            and hmac.compare_digest(expected.encode(), given.encode()))


def same_origin(origin: str | None, referer: str | None, scheme: str, host: str) -> bool:
    """Whether a POST comes from this page: its Origin, else its Referer, names our own scheme and host.

    Browsers send ``Origin`` on every form POST; a request with neither header (or ``Origin: null``
    from a sandboxed frame) is refused rather than given the benefit of the doubt.
    """
    source = origin if origin is not None else referer
    if not source or source == "null":
        return False
    parts = urlsplit(source)
    return parts.scheme == scheme and parts.netloc.lower() == host.lower()


def allowed_hosts(settings: WebSettings) -> list[str]:
    """Host names the page answers to; any other ``Host`` header gets 400 (DNS rebinding)."""
    names = [*LOOPBACK_HOSTS, settings.host, *settings.allowed_hosts]
    names = [f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names]  # IPv6 as in a Host header
    return list(dict.fromkeys(n.lower() for n in names if n not in ("0.0.0.0", "[::]")))


class LoginThrottle:
    """At most ``limit`` failed logins per client within ``window`` seconds; then wait.

    Behind an SSH tunnel every request comes from 127.0.0.1, so this is in effect one budget for
    all: a guesser gets a handful of tries a minute, a person who mistyped waits a little.
    """

    def __init__(self, limit: int = 5, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def wait_seconds(self, client: str, now: float | None = None) -> float:
        """0 when the client may try now, else how long until it may."""
        now = time.monotonic() if now is None else now
        failures = self._recent(client, now)
        if len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window - now)

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._recent(client, now).append(now)
        if len(self._failures) > 10_000:  # a flood of addresses must not grow memory without bound
            self._failures = {k: v for k, v in self._failures.items() if v}

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
