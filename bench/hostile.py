"""Hostile-mail benchmark: crafted and broken mutations of the SpamAssassin corpus through the parse stage's parser.

    .venv/bin/python bench/hostile.py --data DATA/spamassassin-public-corpus.tar.gz [--count 1200] [--seed 1]

Builds ``--count`` hostile messages, each a mutation of a corpus message (truncations, random byte
flips, broken boundaries, bogus charsets, huge headers, deep nesting, crafted HTML, NUL bytes,
invalid encoded-words, thousands of parts, megabyte lines, a few 20 MB attachments), and runs each
in-process through the function the parse stage runs in its child process (``DEFAULT_PARSE``),
then through the spam model's text builder. Per message it records the parse time and whether the
parse produced a record (and one PostgreSQL can store: no NUL, no lone surrogate), a quarantine
reason (``Unparseable``), or an uncaught exception. Writes ``bench/results/hostile.json``:
``messages``, ``stored`` (record or quarantine reason: nothing lost), ``crashed``, ``quarantined``,
``max_parse_s``, percentiles, the slowest message's kind, and the same per kind.

In-process, so a regression that makes a parse superlinear shows here as a long time (the daemon's
deadline would quarantine it instead); the messages are built lazily, one at a time.
"""

from __future__ import annotations

import argparse
import base64
import json
import platform
import random
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from daemon.mail.mime import ParsedMessage, Unparseable  # noqa: E402
from daemon.parse.bounded import DEFAULT_PARSE, _load  # noqa: E402
from daemon.parse.stage import PARSE_BUDGET_SECONDS  # noqa: E402
from daemon.spam.text import TextSettings, build_text  # noqa: E402
from daemon.training.data import iter_raw  # noqa: E402

DEFAULT_DATA = REPO / "../shared/data/spamassassin-public-corpus.tar.gz"
BIG_ATTACHMENTS = 3
"""20 MB attachments built (they dominate the run's memory and time, so only a few)."""

Mutation = Callable[[bytes, random.Random], tuple[bytes, str]]


def _split(raw: bytes) -> tuple[bytes, bytes]:
    match = re.search(rb"\r?\n\r?\n", raw)
    return (raw[:match.start()], raw[match.end():]) if match else (raw, b"")


def _header(raw: bytes, line: bytes) -> bytes:
    """``raw`` with ``line`` added as the first header."""
    return line + b"\r\n" + raw


def truncation(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.randrange(1, max(len(raw), 2))
    return raw[:cut], f"cut at {cut} of {len(raw)} bytes"


def byte_flips(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    data = bytearray(raw)
    flips = max(1, int(len(data) * rng.choice([0.001, 0.01, 0.05])))
    for _ in range(flips):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data), f"{flips} random bytes"


def broken_boundary(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    head, body = _split(raw)
    variant = rng.choice(["wrong declared", "no closing", "delimiters mangled", "no boundary parameter", "empty"])
    parts = b"".join(b"--B\r\nContent-Type: text/plain\r\n\r\n" + body[i:i + 400] + b"\r\n"
                     for i in range(0, min(len(body), 4000), 400)) or b"--B\r\n\r\nx\r\n"
    ctype = {"wrong declared": b'multipart/mixed; boundary="C"', "no boundary parameter": b"multipart/mixed",
             "empty": b'multipart/alternative; boundary=""'}.get(variant, b'multipart/mixed; boundary="B"')
    if variant == "delimiters mangled":
        parts = parts.replace(b"--B\r\n", rng.choice([b"-- B\r\n", b"--B \t\r\n", b"--b\r\n", b"--B--\r\n"]))
    closing = b"" if variant == "no closing" else b"--B--\r\n"
    headers = re.sub(rb"(?im)^content-type:.*(\r?\n[ \t].*)*$", b"X-Was-Content-Type: removed", head)
    return headers + b"\r\nContent-Type: " + ctype + b"\r\n\r\n" + parts + closing, variant


BOGUS_CHARSETS = [b"idna", b"punycode", b"undefined", b"unicode_escape", b"raw_unicode_escape", b"utf-7",
                  b"utf-16", b"base64", b"rot13", b"x-no-such-charset", b"a\x00b", b"utf-8\xff", b"",
                  b"idna''%ff%fe"]


def bogus_charset(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    head, body = _split(raw)
    charset = rng.choice(BOGUS_CHARSETS)
    ctype = rng.choice([b"text/plain", b"text/html"])
    param = b"charset*=" + charset if b"''" in charset else b'charset="' + charset + b'"'
    headers = re.sub(rb"(?im)^content-type:.*(\r?\n[ \t].*)*$", b"X-Was-Content-Type: removed", head)
    subject = b"Subject: =?" + (charset or b"x") + b"?q?Buy_cheap_pills?= now\r\n" if rng.random() < 0.5 else b""
    return (subject + headers + b"\r\nContent-Type: " + ctype + b"; " + param + b"\r\n\r\n" + body,
            f"{ctype.decode()} charset {charset!r}")


def huge_header(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    size = rng.choice([100_000, 1_000_000])
    variant = rng.choice(["subject", "to", "content-type", "many lines", "folded", "parens", "quotes",
                          "encoded words"])
    line = {
        "subject": lambda: b"Subject: " + b"x" * size,
        "to": lambda: b"To: " + b"a@example.com, " * (size // 15),
        "content-type": lambda: b"Content-Type: text/plain; " + b"a=b; " * (size // 5),
        "many lines": lambda: b"\r\n".join([b"X-Header: value"] * (size // 17)),
        "folded": lambda: b"Subject: x" + b"\r\n y" * (size // 4),
        "parens": lambda: b"From: " + b"(" * size,
        "quotes": lambda: b"From: " + b'"\\' * (size // 2),
        "encoded words": lambda: b"Subject: " + b"=?utf-8?q?abc?= " * (size // 16),
    }[variant]()
    return _header(raw, line), f"{variant}, {size:,} bytes"


def deep_nesting(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    head, body = _split(raw)
    depth = rng.choice([100, 500, 2000, 10_000])
    if rng.random() < 0.5:
        nest = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
        tail = b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth))) if rng.random() < 0.5 else b""
        kind = "multipart"
    else:
        nest = b"Content-Type: message/rfc822\r\n\r\nFrom: x@example.org\r\nSubject: inner\r\n" * depth
        tail, kind = b"", "message/rfc822"
    headers = re.sub(rb"(?im)^content-type:.*(\r?\n[ \t].*)*$", b"X-Was-Content-Type: removed", head)
    return headers + b"\r\n" + nest + b"Content-Type: text/plain\r\n\r\n" + body[:2000] + b"\r\n" + tail, \
        f"{kind} x {depth:,}"


CRAFTED_HTML: dict[str, bytes] = {
    "<script>x": b"<script>x", "<style>x": b"<style>x", "<a": b"<a", "<a ": b"<a ", "<!--": b"<!--",
    "</": b"</", "<?": b"<?", "&#": b"&#", "&": b"&", "&nbsp;": b"&nbsp;", "<": b"<",
    "<b>x (unclosed)": b"<b>x", "<div>": b"<div>", "<ul><li>x": b"<ul><li>x",
    "<blockquote type=cite>x": b"<blockquote type=cite>x", '<a href="': b'<a href="',
    "<table><tr><td>x": b"<table><tr><td>x", "<a b=c ": b"<a b=c ", "<![CDATA[": b"<![CDATA[",
}


def crafted_html(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    head, body = _split(raw)
    name = rng.choice(sorted(CRAFTED_HTML))
    size = rng.choice([100_000, 500_000, 1_000_000, 2_000_000])
    unit = CRAFTED_HTML[name]
    markup = b"<html><body><p>" + body[:1000] + b"</p>" + unit * (size // len(unit))
    headers = re.sub(rb"(?im)^content-type:.*(\r?\n[ \t].*)*$", b"X-Was-Content-Type: removed", head)
    if rng.random() < 0.5:
        return headers + b"\r\nContent-Type: text/html\r\n\r\n" + markup, f"{name!r} x {size // len(unit):,}"
    multipart = (b"--B\r\nContent-Type: text/plain\r\n\r\n" + body[:500] + b"\r\n--B\r\nContent-Type: text/html\r\n\r\n"
                 + markup + b"\r\n--B--\r\n")
    return (headers + b'\r\nContent-Type: multipart/alternative; boundary="B"\r\n\r\n' + multipart,
            f"{name!r} x {size // len(unit):,} in an alternative")


def nul_bytes(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    data = bytearray(raw)
    count = rng.choice([1, 10, 1000])
    for _ in range(count):
        data.insert(rng.randrange(len(data) + 1), 0)
    head, body = _split(bytes(data))
    return b"Message-ID: <nul\x00@example.org>\r\nSubject: nul\x00 here\r\n" + head + b"\r\n\r\n" + body, \
        f"{count} NUL bytes"


INVALID_WORDS = [b"=?utf-8?b?####?=", b"=?utf-8?q?unterminated", b"=?punycode?q?Buy_cheap?=", b"=??q?x?=",
                 b"=?utf-8?x?abc?=", b"=?utf-8*?q?abc?=", b"=?" + b"x" * 200 + b"?q?abc?=", b"=?idna?b?/w==?=",
                 b"=?utf-16?b?2D0=?=", b"=?unknown-8bit?q?=FF=FE?="]


def encoded_words(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    words = b" ".join(rng.choice(INVALID_WORDS) for _ in range(rng.randint(1, 6)))
    field = rng.choice([b"Subject", b"From", b"To", b"Content-Disposition: attachment; filename"])
    sep = b"=" if field.endswith(b"filename") else b": "
    return _header(raw, field + sep + words), f"{field.decode()}: {words[:60]!r}"


def many_parts(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    count = rng.choice([1000, 5000, 20_000])
    headers = re.sub(rb"(?im)^content-type:.*(\r?\n[ \t].*)*$", b"X-Was-Content-Type: removed", _split(raw)[0])
    kinds = [b"text/plain", b"text/html", b"application/octet-stream", b"text/plain; charset=idna"]
    parts = b"".join(b"--B\r\nContent-Type: " + rng.choice(kinds) + b"\r\n\r\npart %d\r\n" % i for i in range(count))
    return headers + b'\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n' + parts + b"--B--\r\n", \
        f"{count:,} parts"


def long_line(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    size = rng.choice([1_000_000, 5_000_000])
    unit = rng.choice([b"a.", b"x", b"\xa0", b"a@b.", b"-- ", b"http://x.example/"])
    head, body = _split(raw)
    return head + b"\r\n\r\n" + body[:1000] + b"\r\n" + unit * (size // len(unit)) + b"\r\n", \
        f"{unit!r} x {size // len(unit):,} on one line"


def big_attachment(raw: bytes, rng: random.Random) -> tuple[bytes, str]:
    head, body = _split(raw)
    payload = base64.encodebytes(rng.randbytes(15_000_000))  # 20 MB once encoded
    headers = re.sub(rb"(?im)^content-type:.*(\r?\n[ \t].*)*$", b"X-Was-Content-Type: removed", head)
    return (headers + b'\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n'
            + body[:2000] + b"\r\n--B\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; "
            b"filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" + payload + b"--B--\r\n"), \
        f"{len(payload):,} bytes of base64"


MUTATIONS: dict[str, Mutation] = {
    "truncation": truncation, "byte_flips": byte_flips, "broken_boundary": broken_boundary,
    "bogus_charset": bogus_charset, "huge_header": huge_header, "deep_nesting": deep_nesting,
    "crafted_html": crafted_html, "nul_bytes": nul_bytes, "encoded_words": encoded_words,
    "many_parts": many_parts, "long_line": long_line,
}


def hostile_messages(corpus: list[bytes], count: int, seed: int) -> Iterator[tuple[str, str, bytes]]:
    """(kind, detail, raw) for ``count`` messages: a few 20 MB attachments, the rest spread over the kinds."""
    rng = random.Random(seed)
    kinds = sorted(MUTATIONS)
    for n in range(count):
        kind = "big_attachment" if n < BIG_ATTACHMENTS else kinds[n % len(kinds)]
        mutate = big_attachment if kind == "big_attachment" else MUTATIONS[kind]
        raw, detail = mutate(rng.choice(corpus), rng)
        yield kind, detail, raw


def storable(parsed: ParsedMessage) -> bool:
    """Whether PostgreSQL would take the record: UTF-8 text without NUL (text and JSONB columns)."""
    fields = [parsed.subject, parsed.from_name, parsed.from_addr, parsed.body_text, parsed.message_id or "",
              json.dumps([parsed.headers, parsed.to_addrs, [a.filename for a in parsed.attachments],
                          [a.content_type for a in parsed.attachments], parsed.defects], ensure_ascii=False)]
    try:
        for value in fields:
            value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any("\x00" in value or "\\u0000" in value for value in fields)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summary(rows: list[dict[str, object]]) -> dict[str, object]:
    times = [float(r["parse_s"]) for r in rows]  # type: ignore[arg-type]
    slowest = max(rows, key=lambda r: float(r["parse_s"]))  # type: ignore[arg-type]
    return {
        "messages": len(rows),
        "stored": sum(r["outcome"] in ("parsed", "quarantined") for r in rows),
        "crashed": sum(r["outcome"] == "crashed" for r in rows),
        "quarantined": sum(r["outcome"] == "quarantined" for r in rows),
        "unstorable": sum(r["outcome"] == "unstorable" for r in rows),
        "salvaged": sum(bool(r["salvaged"]) for r in rows),
        "over_budget": sum(t > PARSE_BUDGET_SECONDS for t in times),
        "max_parse_s": round(max(times), 3),
        "p50_parse_s": round(percentile(times, 0.50), 4),
        "p99_parse_s": round(percentile(times, 0.99), 3),
        "mean_bytes": int(statistics.fmean(int(r["bytes"]) for r in rows)),  # type: ignore[call-overload]
        "max_text_s": round(max(float(r["text_s"]) for r in rows), 3),  # type: ignore[arg-type]
        "slowest": {k: slowest[k] for k in ("kind", "detail", "bytes", "parse_s")},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the SpamAssassin corpus tarball or folder")
    parser.add_argument("--count", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "bench/results/hostile.json"))
    args = parser.parse_args()

    corpus = [item.raw for item in iter_raw(args.data)]
    parse = _load(DEFAULT_PARSE)
    settings = TextSettings()
    rows: list[dict[str, object]] = []
    defects: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    started = time.monotonic()
    for n, (kind, detail, raw) in enumerate(hostile_messages(corpus, args.count, args.seed), start=1):
        row: dict[str, object] = {"kind": kind, "detail": detail, "bytes": len(raw), "salvaged": False, "text_s": 0.0}
        t0 = time.perf_counter()
        try:
            parsed = parse(raw)
            row["parse_s"] = time.perf_counter() - t0
            row["outcome"] = "parsed" if storable(parsed) else "unstorable"
            row["salvaged"] = any(d.startswith("ParseFailed") for d in parsed.defects)
            defects.update(d.split(":")[0] for d in parsed.defects if ":" in d)
            t1 = time.perf_counter()
            build_text(parsed, settings)
            row["text_s"] = round(time.perf_counter() - t1, 4)
        except Unparseable as exc:
            row["parse_s"], row["outcome"] = time.perf_counter() - t0, "quarantined"
            reasons[str(exc)] += 1
        except Exception as exc:  # what the benchmark is looking for
            row["parse_s"], row["outcome"] = time.perf_counter() - t0, "crashed"
            row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        row["parse_s"] = round(float(row["parse_s"]), 4)  # type: ignore[arg-type]
        rows.append(row)
        if n % 100 == 0:
            print(f"{n} messages, {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    by_kind: dict[str, list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        by_kind[str(row["kind"])].append(row)
    result = {
        "command": "bench/hostile.py --data DATA/spamassassin-public-corpus.tar.gz "
                   f"--count {args.count} --seed {args.seed}",
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "parse_function": DEFAULT_PARSE,
        "budget_s": PARSE_BUDGET_SECONDS,
        **summary(rows),
        "wall_s": round(time.monotonic() - started, 1),
        "by_kind": {kind: summary(group) for kind, group in sorted(by_kind.items())},
        "defects": dict(defects.most_common()),
        "quarantine_reasons": dict(reasons.most_common()),
        "crashes": [r for r in rows if r["outcome"] in ("crashed", "unstorable")][:20],
        "slowest_10": sorted(rows, key=lambda r: -float(r["parse_s"]))[:10],  # type: ignore[arg-type]
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: result[k] for k in ("messages", "stored", "crashed", "quarantined", "unstorable",
                                              "salvaged", "over_budget", "max_parse_s", "p50_parse_s",
                                              "p99_parse_s", "slowest", "wall_s")}, indent=2))
    return 1 if result["crashed"] or result["unstorable"] else 0


if __name__ == "__main__":
    sys.exit(main())
