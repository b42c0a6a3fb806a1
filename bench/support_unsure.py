"""How many genuine customer questions does a spam model hold as unsure (so no draft is written)?

    python bench/support_unsure.py --model STATE_DIR/models/starter-v1 [--count 40] [--headers]
        [--questions DATA/support-qa/emanual_s10/questions.jsonl]
    python bench/support_unsure.py --model STATE_DIR/models/starter-v1 --bootstrap [--headers]

The questions are the user questions of the shared E-Manual set (``support-qa/emanual_s10``), each
wrapped as a short email from an unknown sender in one of a dozen phrasings written for this
benchmark (greeting, the question, sometimes a line of context, a closing and a name). ``--headers``
adds the ``Received`` and ``DKIM-Signature`` lines real mail from a large provider carries. The
model scores every message; the share per verdict, the median score and the thresholds go to
``bench/results/support_unsure.json``.

``--bootstrap`` also builds the version the day-one bootstrap would give a support mailbox, with
the product's own refit (``daemon.learning.retrain.refit_tokens`` on the bundled base corpus): its
INBOX holds earlier customer questions (E-Manual questions not scored, in the first set of
phrasings) and 2003 ham, its Junk 2003 spam (both from the corpus's test split, which the starter
never trained on). Starter and bootstrapped version then score the same mails, written in a
second, disjoint set of phrasings: the held-out E-Manual questions, and questions of another
support set (``support-qa/stackfaq``: web and software questions) whose topic the mailbox never saw.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.config.learning_schedule import LearningSettings  # noqa: E402
from daemon.learning.dataset import Corpora  # noqa: E402
from daemon.learning.retrain import refit_tokens  # noqa: E402
from daemon.mail.mime import parse_message  # noqa: E402
from daemon.spam.model import SpamModel  # noqa: E402
from daemon.training.data import Example, iter_raw, parse_examples  # noqa: E402
from daemon.training.starter import CORPUS  # noqa: E402

QUESTIONS = REPO / "../shared/data/support-qa/emanual_s10/questions.jsonl"
OTHER_QUESTIONS = REPO / "../shared/data/support-qa/stackfaq/questions.jsonl"
GREETINGS = ["Hi,", "Hello,", "Hello support team,", "Good morning,", "Dear Sir or Madam,", "Hi there,", "Hey,", ""]
LEADS = ["", "I have a question about my Galaxy S10.", "I bought the phone last week.",
         "Sorry to bother you with this.", "I could not find this in the manual.", "Quick question:"]
CLOSINGS = ["Thanks,", "Thank you!", "Best regards,", "Kind regards,", "Many thanks in advance,", "Cheers,"]
NAMES = ["Maria Lopez", "Jan de Vries", "Aisha Khan", "Tom Becker", "Li Wei", "Sophie Martin", "Ravi Patel",
         "Emma Jones", "Lukas Novak", "Fatima Haddad"]
DOMAINS = ["gmail.com", "outlook.com", "yahoo.com", "web.de", "gmx.net", "icloud.com", "proton.me", "orange.fr"]


@dataclass(frozen=True)
class Phrasing:
    greetings: list[str]
    leads: list[str]
    closings: list[str]
    names: list[str]
    domains: list[str]


FIRST = Phrasing(GREETINGS, LEADS, CLOSINGS, NAMES, DOMAINS)
# Written apart from the first set, sharing none of its lines: the scored mails of --bootstrap.
SECOND = Phrasing(
    ["Good afternoon,", "Hi team,", "To whom it may concern,", "Hello again,", "Morning!", "Dear support,"],
    ["", "Hope you can help me out.", "This has been bugging me for a few days.", "My colleague asked me too.",
     "I searched your site first but found nothing.", "Apologies if this is a silly one."],
    ["Regards,", "Thanks a lot,", "Looking forward to your reply,", "All the best,", "Greetings,", "Speak soon,"],
    ["Olga Ivanova", "Pedro Alves", "Yuki Tanaka", "Grace Okafor", "Henrik Lund", "Chloe Dubois", "Omar Said",
     "Nina Rossi", "Sam Carter", "Ana Horvat"],
    ["hotmail.com", "aol.com", "mail.ru", "libero.it", "t-online.de", "fastmail.com", "zoho.com", "seznam.cz"],
)


def customer_mail(question: str, rng: random.Random, headers: bool, when: datetime,
                  phrasing: Phrasing = FIRST) -> bytes:
    name = rng.choice(phrasing.names)
    domain = rng.choice(phrasing.domains)
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
    body = [line for line in (rng.choice(phrasing.greetings), "", rng.choice(phrasing.leads), question, "",
                              rng.choice(phrasing.closings), name.split()[0]) if line is not None]
    msg.set_content("\n".join(body).strip() + "\n")
    return msg.as_bytes()


def read_questions(path: Path) -> list[str]:
    return [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]


def score(model: SpamModel, mails: list[bytes]) -> dict[str, object]:
    started = time.monotonic()
    verdicts = model.classify([parse_message(raw) for raw in mails])
    seconds = time.monotonic() - started
    counts = {v: sum(1 for x in verdicts if x.verdict == v) for v in ("ham", "unsure", "spam")}
    return {
        "messages": len(mails), "verdicts": counts, "unsure_share": counts["unsure"] / len(mails),
        "not_ham_share": (counts["unsure"] + counts["spam"]) / len(mails),
        "median_score": statistics.median(x.score for x in verdicts),
        "thresholds": {"spam": model.thresholds.spam, "unsure": model.thresholds.unsure},
        "seconds": round(seconds, 1),
    }


def support_mailbox(questions: list[str], rng: random.Random, headers: bool, per_class: int) -> list[Example]:
    """What a support mailbox's bootstrap labels: earlier questions and 2003 ham kept, 2003 spam in Junk."""
    start = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    asked = [customer_mail(q, rng, headers, start + timedelta(hours=5 * i)) for i, q in enumerate(questions)]
    mailbox = parse_examples(
        r for r in iter_raw(CORPUS)
        if r.split == "test" and r.name.split("/", 1)[0] in ("easy-ham-2", "spam-2"))
    ham = [e for e in mailbox if not e.label]
    spam = [e for e in mailbox if e.label]
    rng.shuffle(ham)
    rng.shuffle(spam)
    kept = [Example(f"inbox:question-{i}", parse_message(raw), 0) for i, raw in enumerate(asked)]
    kept += ham[: max(0, per_class - len(kept))]
    return kept + spam[:per_class]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model version directory (e.g. state/models/starter-v1)")
    parser.add_argument("--questions", default=str(QUESTIONS), help="questions.jsonl of a support-qa set")
    parser.add_argument("--other-questions", default=str(OTHER_QUESTIONS),
                        help="--bootstrap: questions of another support set, scored as well")
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--headers", action="store_true", help="add Received and DKIM-Signature headers")
    parser.add_argument("--bootstrap", action="store_true",
                        help="also build and score the version a support mailbox's day-one bootstrap gives")
    parser.add_argument("--inbox-questions", type=int, default=150,
                        help="--bootstrap: earlier customer questions in the mailbox's INBOX")
    parser.add_argument("--per-class", type=int, default=500, help="--bootstrap: newest messages per class")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default=str(REPO / "bench/results/support_unsure.json"))
    args = parser.parse_args()

    rng = random.Random(args.seed)
    questions = read_questions(Path(args.questions))
    start = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    model = SpamModel.load(Path(args.model), threads=1)
    common = {
        "model": Path(args.model).name,  # the version directory; where it lies is this machine's business
        "headers": args.headers,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, Python {platform.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    out = Path(args.out)
    existing = json.loads(out.read_text()) if out.exists() else {}
    if not args.bootstrap:
        mails = [customer_mail(q, rng, args.headers, start + timedelta(minutes=17 * i))
                 for i, q in enumerate(questions[: args.count])]
        result: dict[str, object] = common | score(model, mails)
        existing["with_headers" if args.headers else "plain"] = result
    else:
        other = read_questions(Path(args.other_questions))
        scored = {
            "emanual_held_out": [customer_mail(q, rng, args.headers, start + timedelta(minutes=17 * i), SECOND)
                                 for i, q in enumerate(questions[: args.count])],
            "stackfaq": [customer_mail(q, rng, args.headers, start + timedelta(minutes=13 * i), SECOND)
                         for i, q in enumerate(random.Random(args.seed + 1).sample(other, args.count))],
        }
        labelled = support_mailbox(questions[args.count: args.count + args.inbox_questions], rng, args.headers,
                                   args.per_class)
        learning = LearningSettings(threads=1)
        base = Corpora(learning).base()
        work = Path(tempfile.mkdtemp(prefix="support-bootstrap-"))
        try:
            started = time.monotonic()
            refit_tokens(Path(args.model), work / "version", base, labelled, learning,
                         {"bootstrap_benchmark": True})
            refit_seconds = time.monotonic() - started
            boot = SpamModel.load(work / "version", threads=1)
            result = common | {
                "bootstrap": {"labels": {"ham": sum(1 - e.label for e in labelled),
                                         "spam": sum(e.label for e in labelled),
                                         "inbox_questions": args.inbox_questions},
                              "base_corpus": len(base), "refit_seconds": round(refit_seconds, 1)},
                "starter": {name: score(model, mails) for name, mails in scored.items()},
                "bootstrapped": {name: score(boot, mails) for name, mails in scored.items()},
            }
        finally:
            shutil.rmtree(work, ignore_errors=True)
        existing["bootstrap_with_headers" if args.headers else "bootstrap_plain"] = result
    out.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
