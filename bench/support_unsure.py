"""How many genuine customer questions does a spam model hold as unsure (so no draft is written)?

    python bench/support_unsure.py --model STATE_DIR/models/starter-v1 [--count 40] [--headers]
        [--questions DATA/support-qa/emanual_s10/questions.jsonl]

The questions are the user questions of the shared E-Manual set (``support-qa/emanual_s10``), each
wrapped as a short email from an unknown sender in one of a dozen phrasings written for this
benchmark (greeting, the question, sometimes a line of context, a closing and a name). ``--headers``
adds the ``Received`` and ``DKIM-Signature`` lines real mail from a large provider carries. The
model scores every message; the share per verdict, the median score and the thresholds go to
``bench/results/support_unsure.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.mail.mime import parse_message  # noqa: E402
from daemon.spam.model import SpamModel  # noqa: E402

QUESTIONS = REPO / "../shared/data/support-qa/emanual_s10/questions.jsonl"
GREETINGS = ["Hi,", "Hello,", "Hello support team,", "Good morning,", "Dear Sir or Madam,", "Hi there,", "Hey,", ""]
LEADS = ["", "I have a question about my Galaxy S10.", "I bought the phone last week.",
         "Sorry to bother you with this.", "I could not find this in the manual.", "Quick question:"]
CLOSINGS = ["Thanks,", "Thank you!", "Best regards,", "Kind regards,", "Many thanks in advance,", "Cheers,"]
NAMES = ["Maria Lopez", "Jan de Vries", "Aisha Khan", "Tom Becker", "Li Wei", "Sophie Martin", "Ravi Patel",
         "Emma Jones", "Lukas Novak", "Fatima Haddad"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "web.de", "gmx.net", "icloud.com", "proton.me", "orange.fr"]


def customer_mail(question: str, rng: random.Random, headers: bool, when: datetime) -> bytes:
    name = rng.choice(NAMES)
    domain = rng.choice(DOMAINS)
    sender = f"{name.lower().replace(' ', '.')}{rng.randint(1, 99)}@{domain}"
    msg = EmailMessage()
    if headers:
        msg["Received"] = (f"from mail-{rng.randint(10, 99)}.{domain} (mail-{rng.randint(10, 99)}.{domain} "
                           f"[203.0.113.{rng.randint(2, 250)}]) by mx.example.com with ESMTPS; "
                           f"{format_datetime(when)}")
        msg["DKIM-Signature"] = (f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=20230601; "
                                 f"h=to:subject:message-id:date:from:mime-version; bh={rng.randbytes(16).hex()}=; "
                                 f"b={rng.randbytes(48).hex()}")
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = "support@example.com"
    words = question.rstrip("?.!").split()
    msg["Subject"] = rng.choice(["Question", "Help", "How to", "Problem", ""]) + (": " if rng.random() < 0.5 else " ") \
        + " ".join(words[: rng.randint(3, 7)])
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain=domain)
    body = [line for line in (rng.choice(GREETINGS), "", rng.choice(LEADS), question, "",
                              rng.choice(CLOSINGS), name.split()[0]) if line is not None]
    msg.set_content("\n".join(body).strip() + "\n")
    return msg.as_bytes()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model version directory (e.g. state/models/starter-v1)")
    parser.add_argument("--questions", default=str(QUESTIONS), help="questions.jsonl of a support-qa set")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--headers", action="store_true", help="add Received and DKIM-Signature headers")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default=str(REPO / "bench/results/support_unsure.json"))
    args = parser.parse_args()

    rng = random.Random(args.seed)
    questions = [json.loads(line)["question"] for line in Path(args.questions).read_text().splitlines() if line.strip()]
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    mails = [customer_mail(q, rng, args.headers, start + timedelta(minutes=17 * i))
             for i, q in enumerate(questions[: args.count])]
    model = SpamModel.load(Path(args.model), threads=1)
    started = time.monotonic()
    verdicts = model.classify([parse_message(raw) for raw in mails])
    seconds = time.monotonic() - started
    counts = {v: sum(1 for x in verdicts if x.verdict == v) for v in ("ham", "unsure", "spam")}
    scores = [x.score for x in verdicts]
    result = {
        "model": Path(args.model).name,  # the version directory; where it lies is this machine's business
        "messages": len(mails),
        "headers": args.headers,
        "verdicts": counts,
        "unsure_share": counts["unsure"] / len(mails),
        "not_ham_share": (counts["unsure"] + counts["spam"]) / len(mails),
        "median_score": statistics.median(scores),
        "thresholds": {"spam": model.thresholds.spam, "unsure": model.thresholds.unsure},
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    out = Path(args.out)
    existing = json.loads(out.read_text()) if out.exists() else {}
    existing["with_headers" if args.headers else "plain"] = result
    out.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
