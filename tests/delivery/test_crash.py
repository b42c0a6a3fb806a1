"""kill -9 of a real ``mailsense run`` between approval and delivery, or during it: still one copy per draft.

To land kills inside the short delivery window rather than around it, the daemon is frozen
(SIGSTOP) at random moments after an approval and looked at while frozen: when a delivery is
under way (the Message-ID is stored, the status not yet ``delivered``), and sometimes before it
began, it is killed (SIGKILL) right there; else it runs on (SIGCONT). The kills are counted by
where they hit, so the test shows it really crashed inside deliveries.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

from sqlalchemy import text

from tests.delivery.conftest import add_draft, approve, draft_row, folder_messages
from tests.helpers import wait_for

FROM_ENV = {"MAILSENSE_ACCOUNTS__TEST__DELIVERY__FROM_ADDRESS": "support@example.com"}
DRAFTS = 8


def test_kill_9_around_delivery_leaves_exactly_one_reply_per_draft(  # type: ignore[no-untyped-def]
        daemon_factory, db, dovecot, mailbox_user) -> None:
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    proc = daemon_factory()
    proc.env.update(FROM_ENV)
    proc.start()
    proc.wait_log("running:", timeout=60)
    drafts = [add_draft(db, n)[0] for n in range(DRAFTS)]
    kills: Counter[str] = Counter()
    for draft_id in drafts:
        approve(db, draft_id)
        for _ in range(100):
            time.sleep(rng.uniform(0.0, 0.08))
            assert proc.proc is not None
            os.kill(proc.proc.pid, signal.SIGSTOP)
            row = draft_row(db, draft_id)
            if row["status"] == "delivered":
                os.kill(proc.proc.pid, signal.SIGCONT)
                kills["missed"] += 1
                break
            if row["outgoing_message_id"] is None and rng.random() > 0.1:
                os.kill(proc.proc.pid, signal.SIGCONT)
                continue
            in_drafts = any(m["Message-ID"] == row["outgoing_message_id"]
                            for m in folder_messages(dovecot, mailbox_user, "Drafts"))
            kills["before the claim" if row["outgoing_message_id"] is None
                  else "after the APPEND, before the status" if in_drafts else "during the delivery"] += 1
            proc.kill()
            proc.start()
            proc.wait_log("running:", timeout=60)
            break

    def delivered() -> int:
        with db.session() as session:
            return session.execute(text("SELECT count(*) FROM drafts WHERE status = 'delivered'")).scalar_one()

    wait_for(lambda: delivered() == len(drafts), 60, f"all drafts delivered (seed {seed})", proc.log)
    ids = Counter(m["Message-ID"] for m in folder_messages(dovecot, mailbox_user, "Drafts"))
    with db.session() as session:
        rows = session.execute(text("SELECT outgoing_message_id, delivery_attempts FROM drafts")).all()
    print(f"seed {seed}: kills {dict(kills)}; attempts per draft {sorted(r.delivery_attempts for r in rows)}")
    assert sorted(ids) == sorted(r.outgoing_message_id for r in rows), f"seed {seed}"
    assert set(ids.values()) == {1}, f"a reply in Drafts twice (seed {seed}): {ids}"
    assert kills["during the delivery"] + kills["after the APPEND, before the status"] >= 1, dict(kills)
    assert "Traceback" not in proc.log()
    assert proc.terminate() == 0
    assert "delivery stopped" in proc.log()
