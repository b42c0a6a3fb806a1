"""``kill -9`` at random points while mail streams in: every message processed once, nothing lost or doubled.

Why this test exists. The README promises that a crash or ``kill -9`` at any point loses nothing and
stores nothing twice, that a Junk move "happens once even across crashes" (planned in ``mail_actions``
before the IMAP command, checked against the Message-ID after), and that a message gets one draft however
often it is reprocessed. Each of those guarantees has a narrow test of its own (a simulated crash between
move and record in tests/filing/test_stage.py, a reprocessed draft in tests/drafts/test_stage.py), but
nothing killed the real daemon where the guarantees meet: ingestion committing checkpoints while mail
arrives, four workers holding leases on batches at different stages, IMAP moves in flight, drafts half
written, leases of a dead instance freed by the next one. Here the real ``mailsense run`` (4 workers, the
tiny spam model, drafts from a small knowledge base, two watched folders) is SIGKILLed 20 times at random
moments while a thread appends 500 messages (spam, support questions, newsletters and other automated
mail) to Dovecot; then it runs once more to the end, and Dovecot and the database must agree exactly:
500 rows, each done; Junk holds exactly the spam and each message once; the watched folders exactly the
rest; one finished ``mail_actions`` row per spam/unsure message; for each ham message exactly one draft or
one recorded skip, and a draft exactly where one is due.

The moments are drawn from a seeded ``random.Random``; the seed is printed and ``MAILSENSE_CRASH_SEED``
sets it to replay a run (the messages and the kill schedule are the same; where a kill lands in the
daemon's work still depends on timing). Each kill is aimed at a phase: during start-up, after the
daemon logs ``running:``, after it first stores new mail, files a verdict or drafts (or skips) a reply,
then 0.2-3 s later; a phase that does not come within 25 s is not waited for longer.

``pipeline.max_attempts`` is raised above the number of kills: a kill counts a claim against every
message in hand (so that a message that kills its worker is parked, tests/pipeline/test_leases.py), and
with 20 kills the same batch can be in hand at more than the default 5 of them (the claims of the most
claimed message are printed at each kill). That is the poison-message rule doing its job, not a loss, but
it would park innocent mail here; with the limit above 20 a parked message means a real failure. The
heartbeat is 2 s (freed after 6 s instead of 30 s) so that the batches of a killed instance are taken
over by the next instances during the kills, not only by the last run.

Only the last run's log must be free of tracebacks: in a killed run's log a parse child that was still
starting when its daemon died may print ``BrokenPipeError`` (its parent is gone); those are printed.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections import Counter
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon.db.session import Database
from daemon.kb.embeddings import Embedder
from daemon.kb.store import KnowledgeBase
from tests.drafts.conftest import write_kb
from tests.helpers import wait_for

SEED = int(os.environ.get("MAILSENSE_CRASH_SEED", "20261202"))
MESSAGES = 500
KILLS = 20
WORKERS = 4
FOLDERS = ("INBOX", "Support")
APPEND_SECONDS = 120.0  # the appends are spread over about this long: mail arrives during most of the kills
TERMINAL = ("done", "quarantined", "parked")
NOT_STAGES = ("pending actions", "drafts", "most claims")  # the other counts of stage_counts()

_FETCH_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(\S+)", re.IGNORECASE | re.MULTILINE)

# -- the mail -----------------------------------------------------------------------------------

_PEOPLE = ["Maria Lopez", "Tom Becker", "Aiko Tanaka", "Sam Okafor", "Lena Novak", "Ravi Iyer"]
_QUESTIONS = [
    ("Wi-Fi keeps disconnecting", "my Wi-Fi keeps disconnecting every few minutes since {day}. How do I fix this?"),
    ("Internet drops all the time", "the wireless connection at home drops every few minutes. What should I do?"),
    ("Refund for order {n}", "I returned order {n} last week. How do I get a refund, and when is it paid?"),
    ("Where is my refund?", "how long does a refund take? I sent back order {n} on {day}."),
    ("Battery drains fast", "my phone battery is empty after a few hours since {day}. How can I make it last?"),
    ("Battery question", "the battery drains quickly even when I do not use the phone. Any tips?"),
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "the weekend", "the update"]
_SPAM = [
    ("You have WON $1,000,000!!!", "Click here to claim your FREE prize now!!! You have been selected as our "
     "lucky winner. Send your bank details to receive the transfer."),
    ("Cheap meds online - 80% OFF", "Buy cheap viagra and cialis without prescription. Limited time offer, "
     "act now and save $$$. Visit http://cheap-pills.example.biz/offer now."),
    ("Make money fast from home", "Earn $5000 a week working from home. 100% guaranteed, no risk, order today! "
     "To unsubscribe reply with REMOVE in the subject."),
    ("URGENT: claim your prize now", "Congratulations!!! You won the lottery. Click here to claim your FREE "
     "prize now!!! Send your bank details to receive the transfer."),
]
# Ham that must get no draft: (extra headers, sender, the skip rule and reason the draft stage records).
_AUTOMATED = [
    ({"List-Id": "<news.example.org>"}, "Example News <news@example.org>", "mailing_list", "mailing list (list-id)"),
    ({"List-Unsubscribe": "<mailto:leave@lists.example.org>"}, "Product Updates <updates@example.org>",
     "mailing_list", "mailing list (list-unsubscribe)"),
    ({"Precedence": "bulk"}, "Shop <offers@shop.example.com>", "bulk", "bulk mail (Precedence: bulk)"),
    ({}, "Shop <no-reply@shop.example.com>", "no_reply", "no-reply or system sender"),
    ({"Auto-Submitted": "auto-replied"}, "Tom Becker <tom@example.org>", "automated", "automated (Auto-Submitted)"),
]


class Sample:
    """One generated message and what should become of it (apart from the verdict, which is the model's)."""

    def __init__(self, index: int, kind: str, folder: str, raw: bytes, message_id: str, skip: tuple[str, str] | None):
        self.index, self.kind, self.folder, self.raw, self.message_id = index, kind, folder, raw, message_id
        self.skip = skip  # (rule, reason) when ham of this kind gets no draft; None: a person wrote, a draft is due


def make_samples(rng: random.Random) -> list[Sample]:
    samples = []
    date = formatdate(usegmt=True)  # now: within [drafts] max_age
    for index in range(MESSAGES):
        kind = rng.choices(["spam", "question", "automated"], weights=[40, 35, 25])[0]
        folder = rng.choices(FOLDERS, weights=[60, 40])[0]
        message_id = f"<crash-{index:04d}-{kind}-{rng.getrandbits(32):08x}@test.example>"
        msg = EmailMessage()
        skip = None
        day, number = rng.choice(_DAYS), rng.randint(10000, 99999)
        if kind == "spam":
            subject, body = rng.choice(_SPAM)
            domain = rng.choice(["winner-prize.info", "pills4u.ru"])
            msg["From"] = f"Prize Center <offers{rng.randint(1, 999)}@{domain}>"
        elif kind == "question":
            subject, body = rng.choice(_QUESTIONS)
            person = rng.choice(_PEOPLE)
            msg["From"] = f"{person} <{person.split()[0].lower()}@example.org>"
            body = f"Hi there,\n\n{body}\n\nThanks,\n{person.split()[0]}\n"
        else:
            headers, sender, rule, reason = rng.choice(_AUTOMATED)
            subject = rng.choice(["Weekly news", "Your order has shipped", "Out of office", "Tips for your router"])
            body = "Wi-Fi tips: restart your router. Refunds are paid within 14 days.\n"
            msg["From"] = sender
            for name, value in headers.items():
                msg[name] = value
            skip = (rule, reason)
        msg["To"] = "support@example.com"
        msg["Subject"] = subject.format(day=day, n=number)
        msg["Message-ID"] = message_id
        msg["Date"] = date
        msg.set_content(body.format(day=day, n=number))
        samples.append(Sample(index, kind, folder, msg.as_bytes(), message_id, skip))
    return samples


def append_all(dovecot, user: str, samples: list[Sample], rng: random.Random, errors: list[BaseException],
               appended: list[int]) -> None:
    """APPEND every sample to its folder over one connection, paced over about ``APPEND_SECONDS``."""
    pause = APPEND_SECONDS / len(samples)
    try:
        with dovecot.connect(user) as client:
            for sample in samples:
                typ, data = client.append(f'"{sample.folder}"', None, None, sample.raw)
                assert typ == "OK", data
                appended.append(sample.index)
                time.sleep(rng.uniform(0, 2 * pause))
    except BaseException as exc:  # reported by the test thread
        errors.append(exc)


def mailbox_ids(dovecot, user: str, folder: str) -> list[tuple[str, set[str]]]:
    """(Message-ID, flags) of every message in ``folder``, read with a plain imaplib client."""
    with dovecot.connect(user) as client:
        typ, data = client.select(f'"{folder}"', readonly=True)
        assert typ == "OK", data
        if int(data[0]) == 0:
            return []
        typ, data = client.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert typ == "OK", data
    found = []
    for item in data:
        if isinstance(item, tuple):
            flags = _FETCH_FLAGS.search(item[0])
            mid = _MESSAGE_ID.search(item[1])
            found.append((mid.group(1).decode() if mid else "(none)",
                          set(flags.group(1).decode().split()) - {"\\Recent"} if flags else set()))
    return found


# -- the kills ----------------------------------------------------------------------------------

# Where a kill is aimed: None = counted from the spawn, else a log line of the run (regex), then the delay.
PHASES = {
    "start-up": None,
    "running": re.compile(r"running: "),
    "ingesting": re.compile(r"new message\(s\) stored"),
    "filing": re.compile(r"message \d+ \((?:spam|unsure)\): "),
    "drafting": re.compile(r"message \d+: (?:draft|no draft)"),
}
# Most kills land in the work (a run needs some 8-12 s before it files or drafts: the models load first).
PHASE_WEIGHTS = {"start-up": 2, "running": 1, "ingesting": 2, "filing": 4, "drafting": 4}
MARKER_TIMEOUT = 25.0  # a phase that does not come (nothing left to file) is not waited for longer


def stage_counts(db: Database) -> dict[str, int]:
    with db.session() as s:
        counts = dict(s.execute(text("SELECT stage, count(*) FROM messages GROUP BY stage")).all())
        counts["pending actions"] = s.execute(
            text("SELECT count(*) FROM mail_actions WHERE status = 'pending'")).scalar_one()
        counts["drafts"] = s.execute(text("SELECT count(*) FROM drafts")).scalar_one()
        counts["most claims"] = s.execute(text("SELECT coalesce(max(claims), 0) FROM messages")).scalar_one()
    return counts


@pytest.mark.timeout(900)
def test_kill_9_anywhere_while_mail_streams_in_loses_and_doubles_nothing(
    daemon_factory, db: Database, dovecot, mailbox_user: str, tiny_model: Path, embedder: Embedder,
    tmp_path: Path,
):
    started = time.monotonic()
    print(f"\nseed {SEED} (replay: MAILSENSE_CRASH_SEED={SEED})")
    rng = random.Random(SEED)
    samples = make_samples(rng)
    by_id = {s.message_id: s for s in samples}
    assert len(by_id) == MESSAGES
    KnowledgeBase(db, embedder).add([write_kb(tmp_path / "kb")])
    dovecot.create_folder(mailbox_user, "Support")
    config = dict(
        daemon__workers=WORKERS, spam__enabled=True, spam__model_dir=str(tiny_model), drafts__enabled=True,
        account__folders=list(FOLDERS), pipeline__max_attempts=KILLS + 5, pipeline__heartbeat_seconds=2,
    )

    errors: list[BaseException] = []
    appended: list[int] = []
    appender = threading.Thread(
        target=append_all, args=(dovecot, mailbox_user, samples, random.Random(SEED + 1), errors, appended),
        daemon=True)
    appender.start()

    kills = []
    for number in range(1, KILLS + 1):
        phase = rng.choices(list(PHASE_WEIGHTS), weights=list(PHASE_WEIGHTS.values()))[0]
        delay = rng.uniform(0.2, 3.0)
        daemon = daemon_factory(**config).start()
        spawned = time.monotonic()
        marker = PHASES[phase]
        reached = True
        if marker is not None:
            deadline = spawned + MARKER_TIMEOUT
            while not marker.search(daemon.log()) and time.monotonic() < deadline and daemon.running():
                time.sleep(0.05)
            reached = bool(marker.search(daemon.log()))
        time.sleep(delay)
        assert daemon.running(), f"the daemon exited by itself before kill {number}:\n{daemon.log()[-3000:]}"
        daemon.kill()  # SIGKILL
        lived = time.monotonic() - spawned
        counts = stage_counts(db)
        kills.append((number, phase, reached, delay, lived, len(appended), counts, daemon.log()))
        print(f"kill {number:2d}: {phase:8s}{'' if reached else ' (not reached)'} +{delay:.2f}s, "
              f"lived {lived:5.1f}s, {len(appended):3d} appended, {counts}")

    final = daemon_factory(**config).start()
    final_started = time.monotonic()
    appender.join(APPEND_SECONDS * 3)
    assert not appender.is_alive() and not errors, errors
    print(f"all {MESSAGES} appended after {time.monotonic() - started:.0f}s; last run started")

    def settled() -> bool:
        counts = stage_counts(db)
        stages = {stage: n for stage, n in counts.items() if stage not in NOT_STAGES}
        stored = sum(stages.values())
        open_ = sum(n for stage, n in stages.items() if stage not in TERMINAL)
        return stored >= MESSAGES and open_ == 0 and counts["pending actions"] == 0

    def diagnostics() -> str:
        with db.session() as s:
            stuck = s.execute(text(
                "SELECT id, message_id, stage, attempts, claims, lease_owner, last_error FROM messages "
                "WHERE stage NOT IN ('done', 'quarantined', 'parked') ORDER BY id LIMIT 20")).all()
        return f"{stage_counts(db)}\n{[tuple(r) for r in stuck]}\n{final.log()}"

    wait_for(settled, 300, f"all {MESSAGES} messages stored and finished after the last kill", diagnostics)
    final.wait_log("instance ")  # all may have settled before the last run got going: stop a started service
    assert final.terminate() == 0
    elapsed, last_run = time.monotonic() - started, time.monotonic() - final_started

    # -- the database ---------------------------------------------------------------------------
    with db.session() as s:
        rows = s.execute(text(
            "SELECT m.id, m.message_id, f.name AS folder, m.content_sha256, m.spam_verdict, m.stage, "
            "m.last_error, m.quarantine_reason, a.status AS action_status, a.detail AS action_detail, "
            "d.id AS draft_id, d.status AS draft_status, k.rule AS skip_rule, k.reason AS skip_reason "
            "FROM messages m JOIN folders f ON f.id = m.folder_id "
            "LEFT JOIN mail_actions a ON a.message_id = m.id LEFT JOIN drafts d ON d.message_id = m.id "
            "LEFT JOIN draft_skips k ON k.message_id = m.id ORDER BY m.id")).all()
        drafts_per_message = s.execute(text(
            "SELECT message_id, count(*) FROM drafts GROUP BY message_id HAVING count(*) > 1")).all()
        total_drafts = s.execute(text("SELECT count(*) FROM drafts")).scalar_one()
        total_actions = s.execute(text("SELECT count(*) FROM mail_actions")).scalar_one()

    # Nothing lost, nothing stored twice.
    ids = Counter(r.message_id for r in rows)
    assert len(rows) == MESSAGES, f"{len(rows)} rows for {MESSAGES} messages (seed {SEED})"
    assert [m for m, n in ids.items() if n > 1] == [], f"stored twice (seed {SEED})"
    assert set(ids) == set(by_id), f"lost: {sorted(set(by_id) - set(ids))[:10]} (seed {SEED})"
    assert len({r.content_sha256 for r in rows}) == MESSAGES
    assert [(r.message_id, r.folder) for r in rows if r.folder != by_id[r.message_id].folder] == []

    # Every message processed to the end: none parked or quarantined (no message here is hostile, and
    # max_attempts is above the number of kills, see the module docstring).
    unfinished = [(r.id, r.message_id, r.stage, r.last_error, r.quarantine_reason) for r in rows if r.stage != "done"]
    assert unfinished == [], f"not processed to the end (seed {SEED})"
    verdicts = Counter(r.spam_verdict for r in rows)
    ham = [r for r in rows if r.spam_verdict == "ham"]
    assert verdicts["spam"] >= 50 and len(ham) >= 50, verdicts  # the test means something

    # One finished mail action per spam or unsure message, none for ham.
    for r in rows:
        if r.spam_verdict == "spam":
            assert (r.action_status, r.action_detail) in (("done", "moved to Junk"), ("done", "already in Junk")), r
        elif r.spam_verdict == "unsure":
            assert (r.action_status, r.action_detail) == ("done", "keyword $Unsure"), r
        else:
            assert r.action_status is None, r
    assert total_actions == verdicts["spam"] + verdicts["unsure"]

    # Drafts: at most one per message; every ham message has exactly one of a draft or a skip, with the
    # reason its kind calls for; spam and unsure mail has neither (the file stage finishes it).
    assert drafts_per_message == []
    for r in rows:
        if r.spam_verdict != "ham":
            assert r.draft_id is None and r.skip_rule is None, r
            continue
        expected_skip = by_id[r.message_id].skip
        assert (r.draft_id is None) != (r.skip_rule is None), r
        if expected_skip is None:
            assert r.draft_status in ("pending", "needs_human"), r
        else:
            assert (r.skip_rule, r.skip_reason) == expected_skip, r
    due = [r for r in ham if by_id[r.message_id].skip is None]
    assert total_drafts == len(due), f"{total_drafts} drafts for {len(due)} ham messages from people"
    assert len(due) >= 30, "too few ham questions to mean anything"

    # -- Dovecot --------------------------------------------------------------------------------
    junk = mailbox_ids(dovecot, mailbox_user, "Junk")
    spam_ids = Counter(r.message_id for r in rows if r.spam_verdict == "spam")
    junk_ids = Counter(mid for mid, _ in junk)
    assert [m for m, n in junk_ids.items() if n > 1] == [], f"moved to Junk twice (seed {SEED})"
    assert junk_ids == spam_ids, (f"Junk has {sorted((junk_ids - spam_ids).elements())[:10]} too many, misses "
                                  f"{sorted((spam_ids - junk_ids).elements())[:10]} (seed {SEED})")
    assert all("$Junk" in flags and "\\Deleted" not in flags for _, flags in junk)
    for folder in FOLDERS:
        here = mailbox_ids(dovecot, mailbox_user, folder)
        expected = Counter(r.message_id for r in rows if r.folder == folder and r.spam_verdict != "spam")
        here_ids = Counter(mid for mid, _ in here)
        assert here_ids == expected, (f"{folder} has {sorted((here_ids - expected).elements())[:10]} too many, "
                                      f"misses {sorted((expected - here_ids).elements())[:10]} (seed {SEED})")
        unsure = {r.message_id for r in rows if r.spam_verdict == "unsure"}
        assert all(("$Unsure" in flags) == (mid in unsure) and "\\Deleted" not in flags for mid, flags in here)

    # The last run finished what the killed ones left without a single unhandled error.
    assert "Traceback" not in final.log(), final.log()[-4000:]

    earlier_tracebacks = sum(log.count("Traceback") for *_, log in kills)
    for number, *_, log in kills:  # not asserted (a kill may land anywhere), but shown
        if "Traceback" in log:
            print(f"traceback in the log of killed run {number}:\n{log[log.index('Traceback'):][:2000]}")
    recovered = Counter(r.action_detail for r in rows if r.action_detail)
    print(f"{MESSAGES} messages, {KILLS} kills, verdicts {dict(verdicts)}, {total_drafts} drafts, "
          f"skips {dict(Counter(r.skip_rule for r in rows if r.skip_rule))}, actions {dict(recovered)}, "
          f"phases {dict(Counter((k[1], k[2]) for k in kills))}, tracebacks in killed runs: {earlier_tracebacks}, "
          f"most claims of one message {max(k[6]['most claims'] for k in kills)}, "
          f"last run {last_run:.0f}s, in all {elapsed:.0f}s (seed {SEED})")
