"""Generated labelled mail for the training tests and the Junk end-to-end test.

The messages are generated here (obvious spam vs everyday ham), so the suite needs no corpus
and the tiny fine-tune (the ``tiny_model`` fixture in tests/conftest.py) stays within seconds.
"""

from __future__ import annotations

import os
import random
from email.message import EmailMessage

from daemon.mail.mime import parse_message
from daemon.training.data import Example

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_SPAM_SUBJECTS = ["You have WON $1,000,000!!!", "Cheap meds online - 80% OFF", "Make money fast from home",
                  "URGENT: claim your prize now", "Lose 30 pounds in 30 days", "Hot singles in your area",
                  "Your credit approved!!! Act now", "Free Rolex replica watches"]
_SPAM_LINES = ["Click here to claim your FREE prize now!!!", "Limited time offer, act now and save $$$.",
               "Buy cheap viagra and cialis without prescription.", "Earn $5000 a week working from home.",
               "You have been selected as our lucky winner.", "100% guaranteed, no risk, order today!",
               "Visit http://cheap-pills.example.biz/offer now.", "To unsubscribe reply with REMOVE in the subject.",
               "Send your bank details to receive the transfer.", "Congratulations!!! You won the lottery."]
_HAM_SUBJECTS = ["Re: meeting notes for Tuesday", "Patch for the parser bug", "Dinner on Saturday?",
                 "Re: build failure on the release branch", "Quarterly report draft", "Question about the config file",
                 "Photos from the trip", "Re: code review comments"]
_HAM_LINES = ["I pushed the fix to the branch, can you take a look at the diff?",
              "Let's move the meeting to 3pm, the room is booked before that.",
              "The test fails on Python 3.11 because of the new parser.",
              "Mum says dinner is at seven, bring the salad if you can.",
              "I attached the draft of the report, comments welcome.",
              "The config file lives in /etc and the daemon reads it at start.",
              "Thanks for the review, I addressed most of your comments.",
              "We should upgrade the kernel on the build machines next week."]


def make_message(spam: bool, rng: random.Random) -> bytes:
    msg = EmailMessage()
    if spam:
        msg["From"] = f"{rng.choice(['Best Deals', 'Prize Center', 'Pharmacy'])} <offers{rng.randint(1, 999)}@" \
                      f"{rng.choice(['cheap-deals.biz', 'winner-prize.info', 'pills4u.ru'])}>"
        msg["Subject"] = rng.choice(_SPAM_SUBJECTS)
        body = " ".join(rng.sample(_SPAM_LINES, 4))
    else:
        msg["From"] = f"{rng.choice(['Alice Smith', 'Bob Jones', 'Carol White'])} <" \
                      f"{rng.choice(['alice', 'bob', 'carol'])}@{rng.choice(['example.org', 'uni.example.edu'])}>"
        msg["Subject"] = rng.choice(_HAM_SUBJECTS)
        body = "Hi,\n\n" + " ".join(rng.sample(_HAM_LINES, 3)) + "\n\nCheers,\nA."
    msg["To"] = "me@example.net"
    msg["Message-ID"] = f"<{rng.getrandbits(64):x}@test>"
    msg.set_content(body)
    return msg.as_bytes()


def tiny_model_training_set() -> list[Example]:
    """The messages the ``tiny_model`` fixture (tests/conftest.py) trains and validates on."""
    return make_examples(48, seed=1)


def make_examples(n: int, seed: int) -> list[Example]:
    rng = random.Random(seed)
    examples = []
    for i in range(n):
        spam = i % 2 == 1
        examples.append(Example(f"gen-{seed}-{i}", parse_message(make_message(spam, rng)), int(spam)))
    return examples

