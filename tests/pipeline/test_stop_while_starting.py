"""SIGTERM at any moment of start-up is a clean stop, not a death by signal.

systemd sends SIGTERM whenever the unit is stopped, also while the daemon is still importing torch;
a death by the default handler (exit -15) would be recorded as a failure and hides real crashes.
"""

from __future__ import annotations

import time


def test_sigterm_during_start_up_exits_zero(daemon_factory):
    codes = []
    for delay in (1.5, 3.0, 6.0):  # after the interpreter and the command module are loaded
        daemon = daemon_factory().start()
        time.sleep(delay)
        codes.append(daemon.terminate())
    assert codes == [0, 0, 0]
