"""``mailsense status`` after a kill -9: a folder is connected only while its daemon's heartbeat is fresh."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO, make_message, wait_for


def status(config: object) -> str:
    return subprocess.run([sys.executable, "-m", "daemon.cli", "-c", str(config), "status"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=True).stdout


def test_a_killed_daemon_does_not_look_connected(daemon_factory, dovecot, mailbox_user, db):
    dovecot.append(mailbox_user, "INBOX", make_message("before the kill"))
    daemon = daemon_factory(pipeline__heartbeat_seconds=1).start()
    wait_for(lambda: "test / INBOX: connected" in status(daemon.config), 30, "connected", daemon.log)
    daemon.kill()  # SIGKILL: the stored flag stays true, nobody logs out
    wait_for(lambda: "test / INBOX: not connected" in status(daemon.config), 30, "not connected after the kill")
