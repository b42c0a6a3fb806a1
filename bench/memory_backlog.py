"""Peak memory of the daemon working through a backlog of 10,000 messages, a few of them 20 MB.

The messages are imported into a fresh embedded database first (``mailsense import``), then
``mailsense run`` works the backlog with 4 workers (parse stage; spam and drafts off, so the
number measures the pipeline's own handling of large mail, not a model's weights). The peak
resident memory of the daemon and its child processes is sampled every 0.2 s.

    .venv/bin/python bench/memory_backlog.py            # writes bench/results/memory_backlog.json
"""

from __future__ import annotations

import argparse
import base64
import json
import mailbox
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import psutil
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from daemon.db.embedded import embedded_url  # noqa: E402


def build_mbox(path: Path, count: int, large: int, large_mb: int) -> int:
    box = mailbox.mbox(path)
    blob = base64.b64encode(os.urandom(large_mb * 1024 * 1024 * 3 // 4)).decode()
    total = 0
    for i in range(count):
        msg = EmailMessage()
        msg["From"] = f"Sender {i} <sender{i}@example.org>"
        msg["To"] = "support@example.com"
        msg["Subject"] = f"Backlog message {i}"
        msg["Message-ID"] = f"<backlog-{i}@example.org>"
        msg.set_content(f"Hello,\n\nthis is message {i} of the backlog.\n" + "Some words of text. " * 100)
        if i < large:
            msg.add_attachment(blob.encode(), maintype="application", subtype="octet-stream", filename=f"big{i}.bin")
        raw = msg.as_bytes()
        total += len(raw)
        box.add(raw)
    box.close()
    return total


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=5, help="how many of them carry a large attachment")
    parser.add_argument("--large-mb", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "memory_backlog.json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mailsense-membench-"))
    work.chmod(0o755)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MAILSENSE_CONFIG": "", "MAILSENSE_DAEMON__STATE_DIR": str(work),
           "MAILSENSE_DAEMON__WORKERS": str(args.workers), "MAILSENSE_SPAM__ENABLED": "false",
           "MAILSENSE_DRAFTS__ENABLED": "false", "MAILSENSE_PIPELINE__POLL_SECONDS": "0.2"}
    mailsense = [sys.executable, "-m", "daemon.cli"]
    try:
        mbox = work / "backlog.mbox"
        t0 = time.monotonic()
        total = build_mbox(mbox, args.messages, args.large, args.large_mb)
        embedded_url(work)  # start the server and keep a handle on it
        subprocess.run([*mailsense, "db", "upgrade"], env=env, check=True, capture_output=True)
        subprocess.run([*mailsense, "import", str(mbox)], env=env, check=True, capture_output=True)
        mbox.unlink()
        imported_s = time.monotonic() - t0

        # This process holds a handle on the embedded server for the whole run, so it stays up
        # between the commands (the last handle to go stops it).
        url = embedded_url(work, create=False)
        engine = create_engine(url)

        def remaining() -> int:
            with engine.connect() as conn:
                return int(conn.execute(text("SELECT count(*) FROM messages WHERE stage NOT IN "
                                             "('done', 'quarantined', 'parked')")).scalar_one())

        daemon = subprocess.Popen([*mailsense, "run"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(work / "daemon.log", "wb"))  # noqa: SIM115
        proc = psutil.Process(daemon.pid)
        peak = peak_main = 0
        t1 = time.monotonic()
        last_check = 0.0
        while True:
            try:
                rss_main = proc.memory_info().rss
                rss = rss_main + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.NoSuchProcess:
                break
            peak, peak_main = max(peak, rss), max(peak_main, rss_main)
            if time.monotonic() - last_check > 2:
                last_check = time.monotonic()
                if remaining() == 0:
                    break
            if time.monotonic() - t1 > 1800:
                raise SystemExit("backlog not done after 30 minutes")
            time.sleep(0.2)
        worked_s = time.monotonic() - t1
        daemon.terminate()
        daemon.wait(60)
        with engine.connect() as conn:
            stages = dict(conn.execute(text("SELECT stage, count(*) FROM messages GROUP BY 1")).all())
        engine.dispose()
        result = {
            "date": datetime.now(UTC).date().isoformat(),
            "machine": f"{_cpu_model()}, {psutil.cpu_count()} cores, {platform.machine()}",
            "messages": args.messages,
            "large_messages": args.large,
            "large_mb": args.large_mb,
            "backlog_mb": round(total / 1048576, 1),
            "workers": args.workers,
            "import_s": round(imported_s, 1),
            "work_s": round(worked_s, 1),
            "peak_rss_mb_with_children": round(peak / 1048576, 1),
            "peak_rss_mb_daemon": round(peak_main / 1048576, 1),
            "stages": stages,
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
