"""Hostile mail: crafted markup, charsets that raise, structures that break the parser, parses over budget.

Nothing here asserts a time. Work that used to be quadratic runs in a subprocess with a generous
wall-clock guard (``GUARD_SECONDS``), so a regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import text

from daemon.classify.stage import parsed_from_row
from daemon.config import Settings
from daemon.db.session import Database
from daemon.db.tables import Message
from daemon.ingest.store import ensure_account, store_message
from daemon.mail.mime import MAX_BODY_CHARS, ParsedMessage, Unparseable, parse_message
from daemon.parse.stage import ParseStage
from daemon.pipeline.router import Pipeline
from daemon.pipeline.stage import Outcome
from daemon.pipeline.worker import Worker
from daemon.spam.text import TextSettings, build_text

ROOT = Path(__file__).resolve().parents[1]
GUARD_SECONDS = 30
MEGABYTE = 1_000_000


def mail(body: bytes, content_type: str = "text/plain", subject: bytes = b"offer", **headers: bytes) -> bytes:
    extra = b"".join(name.replace("_", "-").encode() + b": " + value + b"\r\n" for name, value in headers.items())
    return (b"From: Seller <seller@example.org>\r\nTo: you@example.com\r\nSubject: " + subject + b"\r\n" + extra
            + b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)


def run_guarded(code: str) -> object:
    """Run ``code`` (which prints JSON) in a fresh interpreter; fail, not hang, past the guard."""
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                              text=True, timeout=GUARD_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {GUARD_SECONDS} s: superlinear on crafted input")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_a_megabyte_of_crafted_html_parses_to_its_text():
    # Each body is 1 MB of markup that made the old regexes (or html.parser under html2text) rescan the
    # rest of the input from every "<": "<script>x" * n took 4.7 s at 72 KB and grows with the square.
    results = run_guarded("""
        import json
        from daemon.mail.mime import parse_message
        HEAD = (b"From: a@example.org\\r\\nSubject: crafted\\r\\nContent-Type: text/html\\r\\n\\r\\n"
                b"<p>Cheap meds here</p>")
        M = 1_000_000
        bodies = {"script": b"<script>x" * (M // 9), "style": b"<style>x" * (M // 8), "open tags": b"<a" * (M // 2),
                  "open tags with space": b"<a " * (M // 3), "open comments": b"<!--" * (M // 4),
                  "bare references": b"&#" * (M // 2), "spaces": b"&nbsp;" * (M // 6),
                  "nested lists": b"<ul><li>x" * (M // 9), "unclosed quotes": b'<a href="' * (M // 9)}
        out = {}
        for name, body in bodies.items():
            parsed = parse_message(HEAD + body)
            out[name] = {"text": parsed.body_text, "defects": parsed.defects}
        print(json.dumps(out))
    """)
    assert isinstance(results, dict) and len(results) == 9
    for name, result in results.items():
        words = result["text"].split()
        assert words[:3] == ["Cheap", "meds", "here"], name
        assert any(d.startswith("HtmlCut: ") for d in result["defects"]), name
    assert set(results["script"]["text"].split()[3:]) == {"x"}  # unclosed scripts: the tags go, the text stays
    assert set(results["nested lists"]["text"].split()[3:]) <= {"x", "*"}
    assert "<a" in results["open tags"]["text"]  # a "<" that opens no tag is text


def test_what_is_cut_is_recorded_and_the_body_stays_bounded():
    html = b"<p>" + b"word " * 300_000 + b"</p>"
    parsed = parse_message(mail(html, "text/html"))
    assert parsed.body_text.startswith("word word") and len(parsed.body_text) <= MAX_BODY_CHARS
    assert any(d.startswith("HtmlCut: 1,500,007 characters of HTML") for d in parsed.defects)
    plain = parse_message(mail(b"words and more words\n" * 100_000))
    assert any(d.startswith("TextCut: ") for d in plain.defects) and len(plain.body_text) == MAX_BODY_CHARS
    header = parse_message(mail(b"body", subject=b"x" * 50_000))
    assert "HeaderCut: subject of 50,000 characters" in header.defects and header.subject.startswith("xxx")


def test_crafted_text_does_not_stall_the_spam_model_input():
    # "\b[\w.+-]+@" in daemon/spam/text.py rescanned the rest of "a.a.a.a..." from every word: minutes.
    result = run_guarded("""
        import json
        from daemon.mail.mime import parse_message
        from daemon.spam.text import TextSettings, build_text
        raw = b"From: a@example.org\\r\\nSubject: dots\\r\\n\\r\\nBuy now " + b"a." * 99_000 + b"@x"
        print(json.dumps(build_text(parse_message(raw), TextSettings())))
    """)
    assert isinstance(result, str) and "Buy now" in result


@pytest.mark.parametrize("charset", ["idna", "punycode", "undefined", "unicode_escape", "x-no-such-charset",
                                     "base64", "a\x00b"])
def test_a_body_charset_that_raises_or_hides_the_words_is_read_lossily(charset):
    # idna and undefined raise UnicodeError (only LookupError was caught: the message was quarantined
    # and never classified); punycode "decodes" ASCII into other characters, hiding the words.
    for ctype, body in (("text/plain", b"Buy cheap pills now \xe9"), ("text/html", b"<p>Buy cheap pills now \xe9</p>")):
        parsed = parse_message(mail(body, f'{ctype}; charset="{charset}"'))
        assert parsed.body_text.split()[:4] == ["Buy", "cheap", "pills", "now"], (charset, ctype)
        parsed.body_text.encode("utf-8")  # storable: no lone surrogates


def test_charsets_in_parameters_and_a_utf7_body_still_give_storable_text():
    rfc2231 = parse_message(mail(b"Buy cheap pills now", "text/plain; charset*=idna''%ff%fe"))
    assert rfc2231.body_text.startswith("Buy cheap pills now")
    utf7 = parse_message(mail(b"Buy cheap +2D0- pills now", "text/plain; charset=utf-7"))  # a lone surrogate
    assert utf7.body_text.split()[:2] == ["Buy", "cheap"] and "\ufffd" in utf7.body_text
    utf7.body_text.encode("utf-8")
    attachment = (b"--B\r\nContent-Type: text/plain\r\n\r\nsee the file\r\n--B\r\nContent-Type: application/pdf\r\n"
                  b"Content-Disposition: attachment; filename*=idna''%ff%fe.pdf\r\n\r\nxx\r\n--B--\r\n")
    parsed = parse_message(mail(attachment, "multipart/mixed; boundary=B"))
    assert parsed.body_text.strip() == "see the file"
    assert [(a.content_type, a.size) for a in parsed.attachments] == [("application/pdf", 2)]
    assert "FilenameUnreadable: UnicodeError" in parsed.defects


@pytest.mark.parametrize(("subject", "expected"), [
    (b"=?punycode?q?Buy_cheap_pills?=", "Buy cheap pills"),  # punycode turned it into other characters
    (b"=?idna?q?Buy_cheap_pills?= now", "Buy cheap pills now"),
    (b"=?x-no-such-charset?q?caf=C3=A9?= au lait", "café au lait"),
    (b"=?utf-8?b?####?= pills", "pills"),  # invalid base64: the word is dropped, the rest kept
    (b"=?utf-8?q?unterminated", "=?utf-8?q?unterminated"),
])
def test_headers_with_invalid_encoded_words_still_decode(subject, expected):
    assert parse_message(mail(b"body", subject=subject)).subject == expected


def test_raw_8bit_header_with_a_body_charset_that_raises():
    parsed = parse_message(mail(b"Buy cheap pills now", "text/plain; charset=idna", subject=b"Buy \xe9 pills"))
    assert parsed.subject == "Buy é pills" and parsed.body_text.startswith("Buy cheap pills now")


def nested_forwards(depth: int) -> bytes:
    # message/rfc822 parts nest without boundaries; the stdlib parser recurses per level.
    return (b"From: Seller <seller@example.org>\r\nSubject: nested\r\n"
            + b"Content-Type: message/rfc822\r\n\r\nFrom: x@example.org\r\nSubject: inner\r\n" * depth
            + b"Content-Type: text/plain\r\n\r\nBuy cheap pills now\r\n")


def test_a_structure_that_makes_the_parser_raise_gets_a_minimal_parse():
    parsed = parse_message(nested_forwards(2000))
    assert "ParseFailed: RecursionError" in parsed.defects
    assert (parsed.subject, parsed.from_addr) == ("nested", "seller@example.org")
    assert "Buy cheap pills now" in parsed.body_text
    # Nested comments in From made the address parser recurse past the limit (an uncaught RecursionError).
    parens = parse_message(b"From: " + b"(" * 5000 + b"\r\nSubject: parens\r\n\r\nBuy cheap pills now\r\n")
    assert parens.subject == "parens" and parens.body_text.startswith("Buy cheap pills now")
    assert "AddressesUnreadable: from (RecursionError)" in parens.defects
    # Multiparts nested 1,000 deep: the parser reads 50 levels, the rest is read as raw text.
    deep = b"From: a@example.org\r\nSubject: deep\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(1000))
    parsed = parse_message(deep + b"Content-Type: text/plain\r\n\r\nBuy cheap pills now\r\n")
    assert "Buy cheap pills now" in parsed.body_text
    assert any(d.startswith("MultipartsCut: more than 50") for d in parsed.defects)


@pytest.mark.parametrize("raw", [b"", b" \r\n", b"no header here, just text\r\n"])
def test_only_input_with_nothing_to_work_on_is_refused(raw):
    with pytest.raises(Unparseable):
        parse_message(raw)


def stalling_parse(raw: bytes) -> ParsedMessage:
    """A parse that never finishes, or kills its process, on a message that asks for it (runs in the child)."""
    if b"STALL" in raw:
        time.sleep(300)
    if b"DIE" in raw:
        os.kill(os.getpid(), signal.SIGKILL)
    return parse_message(raw)


def test_a_parse_over_budget_is_quarantined_and_the_batch_goes_on():
    stage = ParseStage(budget_seconds=1.0, parse=f"{__name__}:stalling_parse")
    messages = [SimpleNamespace(id=1, raw=mail(b"STALL"), message_id=None),
                SimpleNamespace(id=2, raw=mail(b"Buy cheap pills now"), message_id=None),
                SimpleNamespace(id=3, raw=b"", message_id=None),
                SimpleNamespace(id=4, raw=mail(b"DIE"), message_id=None),
                SimpleNamespace(id=5, raw=mail(b"Still parsed after that"), message_id=None)]
    session = SimpleNamespace(begin=nullcontext, expire=lambda *a: None, in_transaction=lambda: False,
                              commit=lambda: None)
    try:
        outcomes = stage.process(session, messages)  # type: ignore[arg-type]
    finally:
        stage.parser.close()
    assert outcomes[1].kind == "quarantine" and "1 s budget" in (outcomes[1].reason or "")
    assert outcomes[2] == Outcome.next() and messages[1].body_text == "Buy cheap pills now"
    assert outcomes[3] == Outcome.quarantine("empty message (0 bytes of content)")
    assert outcomes[4] == Outcome.quarantine("MIME parser crashed: the parse process died (killed by SIGKILL)")
    assert outcomes[5] == Outcome.next() and messages[4].body_text == "Still parsed after that"


class Recorder:
    """Stands in for the classify stage: keeps the text the spam model would be given."""

    name = "classify"
    batch_size = 32

    def __init__(self) -> None:
        self.texts: dict[int, str] = {}

    def waiting_reason(self) -> str | None:
        return None

    def process(self, session: object, messages: list[Message]) -> dict[int, Outcome]:
        for message in messages:
            self.texts[message.id] = build_text(parsed_from_row(message), TextSettings())
        return {m.id: Outcome.finish() for m in messages}


def test_hostile_mail_reaches_classify_with_text_and_only_the_hopeless_is_quarantined(db: Database):
    hostile = {
        "idna": mail(b"Buy cheap pills now", "text/plain; charset=idna"),
        "punycode": mail(b"<p>Buy cheap pills now</p>", "text/html; charset=punycode"),
        "encoded-word": mail(b"Buy cheap pills now", subject=b"=?punycode?q?Cheap_pills?= =?utf-8?b?####?="),
        "nested": nested_forwards(2000),
        "crafted-html": mail(b"<p>Buy cheap pills now</p>" + b"<script>x" * (MEGABYTE // 9), "text/html"),
        "nul": mail(b"Buy cheap\x00 pills now", subject=b"nul\x00", Message_ID=b"<a\x00b@example.org>"),
        "stall": mail(b"STALL Buy cheap pills now"),
        "no-header": b"Buy cheap pills now, no header at all\r\n",
    }
    ids = {}
    with db.session() as s, s.begin():
        account = ensure_account(s, "import")
        for name, raw in hostile.items():
            ids[name] = store_message(s, account_id=account.id, raw=raw, source="import", first_stage="parse")[1]
    recorder = Recorder()
    parse = ParseStage(budget_seconds=2.0, parse=f"{__name__}:stalling_parse")
    worker = Worker("test", db, Pipeline([parse, recorder]), Settings.model_validate({}).pipeline)
    try:
        while worker.run_once():
            pass
    finally:
        parse.parser.close()
    with db.session() as s:
        rows = {r.id: r for r in s.execute(text("SELECT id, stage, quarantine_reason, raw, parse_defects "
                                                 "FROM messages")).mappings()}
    for name in ("idna", "punycode", "encoded-word", "nested", "crafted-html", "nul"):
        assert rows[ids[name]]["stage"] == "done", name
        assert "Buy cheap pills now" in recorder.texts[ids[name]], name
    assert "Subject: Cheap pills" in recorder.texts[ids["encoded-word"]]
    assert "ParseFailed: RecursionError" in rows[ids["nested"]]["parse_defects"]
    stalled = rows[ids["stall"]]
    assert stalled["stage"] == "quarantined" and "2 s budget" in stalled["quarantine_reason"]
    assert bytes(stalled["raw"]) == hostile["stall"]
    assert rows[ids["no-header"]]["stage"] == "quarantined"
    assert rows[ids["no-header"]]["quarantine_reason"] == "no RFC 822 header block found"
