"""Ingestion benchmark: APPEND-to-stored latency via IDLE, and catch-up throughput.

Starts a real Dovecot and the embedded PostgreSQL (the test fixtures' helpers), runs
``mailsense run`` as a child process, and measures from the moment our APPEND returns until the
row is visible in the database (polled every 10 ms).

    .venv/bin/python bench/ingest_latency.py [--messages 50] [--backlog 500]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from daemon.db import migrate
from daemon.db.embedded import embedded_url
from tests.helpers import DaemonProcess, make_message, wait_for, write_config
from tests.servers.dovecot import DovecotServer


def count(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM messages")).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=50, help="single APPENDs timed one by one")
    parser.add_argument("--backlog", type=int, default=500, help="messages waiting before the daemon starts")
    parser.add_argument("--out", default="bench/results/ingest.json")
    args = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="mailsense-bench-"))
    state.chmod(0o755)
    url = embedded_url(state)
    migrate.upgrade(url)
    engine = create_engine(url)
    with DovecotServer() as dovecot:
        dovecot.set_password("bench", "benchpw")
        config = write_config(state, url, dovecot, "bench")
        daemon = DaemonProcess(config, env={"MAILSENSE_TEST_PASSWORD": "benchpw"})

        for i in range(args.backlog):
            dovecot.append("bench", "INBOX", make_message(f"backlog {i}", "body line\n" * 40))
        started = time.monotonic()
        daemon.start()
        wait_for(lambda: count(engine) >= args.backlog, 600, "backlog", daemon.log)
        catch_up_s = time.monotonic() - started  # includes daemon start-up (~1 s)
        daemon.wait_log("connected (IDLE)")
        time.sleep(1)

        latencies = []
        for i in range(args.messages):
            before = count(engine)
            dovecot.append("bench", "INBOX", make_message(f"timed {i}"))
            t0 = time.monotonic()
            while count(engine) == before:
                time.sleep(0.01)
            latencies.append(time.monotonic() - t0)
            time.sleep(0.2)
        daemon.terminate()

    latencies.sort()
    result = {
        "append_to_row_s": {
            "n": len(latencies),
            "p50": round(statistics.median(latencies), 3),
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            "max": round(latencies[-1], 3),
        },
        "catch_up": {"messages": args.backlog, "seconds": round(catch_up_s, 2),
                     "msgs_per_s": round(args.backlog / catch_up_s, 1)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
