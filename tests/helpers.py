"""Test helpers: a config writer, the daemon as a child process, polling, sample messages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(state_dir: Path, db_url: str, dovecot: Any, user: str, **overrides: Any) -> Path:
    """A config for one account on the test Dovecot; ``section__key=value`` overrides anything.

    ``account__key=value`` changes the account; ``accounts=False`` leaves the account out.
    """
    account: dict[str, Any] = {
        "name": "test",
        "host": "127.0.0.1",
        "port": dovecot.tls_port,
        "tls": "implicit",
        "ca_file": str(dovecot.cert_path),
        "user": user,
        "password_env": "MAILSENSE_TEST_PASSWORD",
        "folders": ["INBOX"],
        "poll_seconds": 1,
        "timeout_seconds": 10,
        # The suite appends mail right after (or before) the daemon starts and expects all of it:
        # take everything, not only mail after the first connect (the default; tests/test_start_point.py).
        "start_from": "all",
    }
    sections: dict[str, dict[str, Any]] = {
        "daemon": {"state_dir": str(state_dir), "workers": 2, "shutdown_timeout": 10},
        "database": {"url": db_url},
        "pipeline": {"poll_seconds": 0.5, "retry_base_seconds": 0.5},
        "spam": {"enabled": False},  # ingestion tests stop after parsing; spam tests switch it on
    }
    with_account = overrides.pop("accounts", True)
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if section == "account":
            account[name] = value
        else:
            sections.setdefault(section, {})[name] = value
    lines: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items())
        lines.append("")
    if with_account:
        lines.append("[[accounts]]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in account.items())
    path = state_dir / "mailsense.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class DaemonProcess:
    """``mailsense run`` in a child process, with its log captured to a file."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        self.log_path = self.config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "-c", str(self.config), "run"],
            cwd=REPO, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_log(self, needle: str, timeout: float = 30) -> None:
        wait_for(lambda: needle in self.log(), timeout, f"log line {needle!r}", self.log)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait; return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
            self._log.close()


def wait_for(
    condition: Callable[[], Any],
    timeout: float = 20,
    what: str = "condition",
    diagnostics: Callable[[], str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n--- diagnostics ---\n{diagnostics()[-4000:]}" if diagnostics else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{detail}")
        time.sleep(0.1)


def make_message(subject: str = "Hello", body: str = "Just a test.\n", sender: str = "alice@example.org") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Alice Example <{sender}>"
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["Date"] = "Wed, 25 Nov 2026 10:00:00 +0000"
    msg.set_content(body)
    return msg.as_bytes()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(port: int, series: str) -> float | None:
    """Read one series from the daemon's /metrics (None when absent)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def imap_errors(port: int, kind: str, account: str = "test") -> float:
    """How often the daemon's folder watchers have failed with ``kind`` (0 until /metrics answers)."""
    try:
        return metric(port, f'mailsense_imap_errors_total{{account="{account}",kind="{kind}"}}') or 0.0
    except OSError:  # the health server is not listening yet
        return 0.0
