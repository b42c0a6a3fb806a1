"""Retrieval benchmark on the support-qa sets: recall@1/5/10, MRR@10 and latency per mode.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/rag_eval.py                 # both sets, all questions
    .venv/bin/python bench/rag_eval.py --datasets emanual_s10 --max-questions 20   # quick look

Each set is ingested with the product's own code (``KnowledgeBase.add`` on its kb.jsonl) into
its own database of an embedded server under ``bench/work/`` (or ``--database-url``'s
server), then every question is searched in the three modes of ``daemon.kb.search``.
Documents are ranked by their best chunk. For emanual_s10 the parent and the children of a
gold section count as hits (a parent contains its children's text; see the data README).

Latency: ``p50_ms``/``p95_ms`` are per question end to end (query embedding + SQL), one
question at a time; ``sql_p50_ms``/``sql_p95_ms`` are the SQL part alone.

Email variant: questions wrapped in realistic bodies (greeting, context, sign-off,
signature, and a quoted earlier message about a *different* topic), searched once with the
query built by ``daemon.kb.query.build_query`` ("email") and once with subject + raw body
("email_raw"), to show what the cleaning is worth.

Drafting hooks: functions in ``EXTRA_EVALUATORS`` get a ``DatasetRun`` and return a dict
merged into that set's results (e.g. ``{"draft": {...}, "abstain": {...}}``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from daemon.db import migrate  # noqa: E402
from daemon.db.embedded import embedded_url, to_sqlalchemy_url  # noqa: E402
from daemon.db.session import Database  # noqa: E402
from daemon.kb.chunking import ChunkParams  # noqa: E402
from daemon.kb.embeddings import Embedder  # noqa: E402
from daemon.kb.query import build_query  # noqa: E402
from daemon.kb.search import MODES, SearchHit, SearchParams, search  # noqa: E402
from daemon.kb.store import KnowledgeBase  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/support-qa")
KS = (1, 5, 10)
CHUNKS_PER_QUERY = 30  # enough chunks to fill 10 distinct documents


@dataclass
class Question:
    id: str
    question: str
    gold: set[str]  # external ids that count as a hit
    answer: str


@dataclass
class DatasetRun:
    """What a drafting evaluator needs: the set, its database and a way to retrieve."""

    name: str
    db: Database
    embedder: Embedder
    questions: list[Question]
    params: SearchParams
    kb_entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def retrieve(self, query: str, mode: str = "hybrid", limit: int = 10) -> list[SearchHit]:
        with self.db.session() as s, s.begin():
            return search(s, query, self.embedder, replace(self.params, mode=mode, limit=limit))


EXTRA_EVALUATORS: list[Callable[[DatasetRun], dict[str, Any]]] = []
"""Hooks for the drafting benchmark (draft quality, abstention); see the module docstring."""


# -- data ---------------------------------------------------------------------------------------


def load_dataset(folder: Path) -> tuple[list[Question], dict[str, dict[str, Any]]]:
    entries = {e["id"]: e for e in map(json.loads, (folder / "kb.jsonl").read_text().splitlines()) if e}
    related = _relatives(entries)
    questions = []
    for line in (folder / "questions.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        gold = set(q["relevant_ids"])
        for gid in q["relevant_ids"]:
            gold |= related.get(gid, set())
        questions.append(Question(q["id"], q["question"], gold, q.get("answer", "")))
    return questions, entries


def _relatives(entries: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    """Direct parent and children from the ``hierarchy`` field ("a>b>c": c's parent is b), if present."""
    related: dict[str, set[str]] = {}
    for eid, entry in entries.items():
        path = [p for p in str(entry.get("hierarchy", "")).split(">") if p]
        if len(path) >= 2 and path[-1] == eid:
            parent = path[-2]
            related.setdefault(eid, set()).add(parent)
            related.setdefault(parent, set()).add(eid)
    return related


GREETINGS = ["Hi,", "Hello support team,", "Dear Sir or Madam,", "Hi there,", "Good morning,", ""]
CONTEXTS = [
    "I have had this device for a few months now and mostly it works fine.",
    "Sorry to bother you again, I could not find this in the documentation.",
    "My colleague said you might be able to help with this.",
    "",
    "We are setting this up for our whole team and ran into a problem.",
]
SIGN_OFFS = ["Thanks,", "Best regards,", "Thank you in advance!", "Cheers,", "Kind regards,"]
NAMES = ["Maria Lopez", "J. Smith", "Chen Wei", "Alex", "Priya Raman"]
SIGNATURES = [
    "--\n{name}\nOperations Manager | Example Corp\n+1 555 0100",
    "{name}\nSent from my iPhone",
    "{name}",
    "--\n{name}\nwww.example.com\n\nCONFIDENTIALITY NOTICE: This e-mail and any attachments are "
    "confidential and "
    "intended solely for the addressee. If you are not the intended recipient, please delete it.",
]
QUOTE_HEADERS = [
    "On Mon, 3 Nov 2026 at 09:12, Support <support@example.com> wrote:",
    "-----Original Message-----\nFrom: Support <support@example.com>\n"
    "Sent: Monday, November 3, 2026 9:12 AM\n"
    "To: {name}\nSubject: Re: your request",
    "On Tue, Nov 4, 2026 at 4:55 PM Support Team <support@example.com>\nwrote:",
]
SUBJECTS = ["Question", "Help please", "Re: your request", "Support request", "{question}", "Fwd: {question}"]


def wrap_email(q: Question, other: Question, rng: random.Random) -> tuple[str, str]:
    """A realistic support mail around ``q``; the quoted part is an earlier exchange about ``other``."""
    name = rng.choice(NAMES)
    subject = rng.choice(SUBJECTS).format(question=q.question.rstrip("?. "))
    parts = [rng.choice(GREETINGS), rng.choice(CONTEXTS), q.question, rng.choice(SIGN_OFFS)]
    body = "\n\n".join(p for p in parts[:3] if p) + "\n\n" + parts[3] + "\n" + rng.choice(SIGNATURES).format(name=name)
    header = rng.choice(QUOTE_HEADERS).format(name=name)
    quoted_text = f"{other.question}\n\n{other.answer or 'We will look into it.'}"
    # Outlook pastes the earlier message below its header block; other clients quote with "> ".
    outlook = header.startswith("-----")
    quoted = quoted_text if outlook else "\n".join("> " + line for line in quoted_text.split("\n"))
    return subject, f"{body}\n\n{header}\n{quoted}\n"


# -- measurement --------------------------------------------------------------------------------


def document_ranking(hits: Sequence[SearchHit]) -> list[str]:
    seen: list[str] = []
    for hit in hits:
        if hit.external_id not in seen:
            seen.append(hit.external_id)
    return seen


def metrics(rankings: Sequence[list[str]], questions: Sequence[Question]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in KS:
        out[f"recall@{k}"] = _mean(any(d in q.gold for d in r[:k]) for r, q in zip(rankings, questions, strict=True))
    rr = []
    for r, q in zip(rankings, questions, strict=True):
        rank = next((i for i, d in enumerate(r[:10], 1) if d in q.gold), None)
        rr.append(1 / rank if rank else 0.0)
    out["mrr@10"] = round(statistics.fmean(rr), 4)
    return out


def _mean(values: Any) -> float:
    values = list(values)
    return round(sum(values) / len(values), 4)


def _pct(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))], 2)


def run_queries(
    db: Database, embedder: Embedder, queries: Sequence[str], params: SearchParams, vectors: np.ndarray | None
) -> tuple[list[list[str]], list[float], list[float]]:
    """Rankings, end-to-end ms (embedding + SQL; only without precomputed vectors) and SQL ms."""
    rankings, total_ms, sql_ms = [], [], []
    p = replace(params, limit=CHUNKS_PER_QUERY)
    with db.session() as s:
        for i, query in enumerate(queries):
            t0 = time.perf_counter()
            vector = None
            if params.mode != "fts":
                vector = vectors[i] if vectors is not None else embedder.embed_query(query)
            t1 = time.perf_counter()
            with s.begin():
                hits = search(s, query, embedder, p, query_vector=vector)
            t2 = time.perf_counter()
            rankings.append(document_ranking(hits))
            total_ms.append((t2 - t0) * 1000)
            sql_ms.append((t2 - t1) * 1000)
    return rankings, total_ms, sql_ms


def evaluate_set(
    name: str, folder: Path, base_url: str, embedder: Embedder, args: argparse.Namespace
) -> dict[str, Any]:
    questions, entries = load_dataset(folder)
    if args.max_questions:
        questions = random.Random(7).sample(questions, min(args.max_questions, len(questions)))
    url = ensure_database(base_url, f"rag_{name}_{args.chunk_max_chars}")
    migrate.upgrade(url)
    db = Database.from_url(url)
    kb = KnowledgeBase(db, embedder, ChunkParams(max_chars=args.chunk_max_chars))
    t0 = time.perf_counter()
    report = kb.add([folder / "kb.jsonl"], progress=False)
    ingest_s = time.perf_counter() - t0
    print(f"{name}: {report.added} added, {report.unchanged} unchanged, {report.chunks} chunks, {ingest_s:.1f} s")
    params = SearchParams(max_df=args.max_df)
    result: dict[str, Any] = {"questions": len(questions), "documents": len(entries)}
    if report.added:
        result["ingest_s"] = round(ingest_s, 1)

    # Latency first, per question with its own embedding (what the daemon does), hybrid mode.
    texts = [q.question for q in questions]
    t0 = time.perf_counter()
    vectors = embedder.embed(texts)
    print(f"{name}: embedded {len(questions)} questions in {time.perf_counter() - t0:.1f} s")
    for mode in MODES:
        rankings, total_ms, sql_ms = run_queries(db, embedder, texts, params.with_mode(mode), None)
        result[mode] = {
            **metrics(rankings, questions),
            "p50_ms": _pct(total_ms, 50),
            "p95_ms": _pct(total_ms, 95),
            "sql_p50_ms": _pct(sql_ms, 50),
            "sql_p95_ms": _pct(sql_ms, 95),
        }
        print(f"{name} {mode}: {result[mode]}")

    # Textbook RRF (k=60, equal weights) and the previous default (both legs min-max scaled,
    # vector weight 0.6) through the same SQL, for comparison (quality only).
    for label, variant in (
        ("hybrid_rrf60", replace(params, fusion="rrf", vector_weight=0.5, rrf_k=60)),
        ("hybrid_minmax06", replace(params, fusion="minmax", vector_weight=0.6)),
    ):
        rankings, _, _ = run_queries(db, embedder, texts, variant, vectors)
        result[label] = metrics(rankings, questions)
        print(f"{name} {label}: {result[label]}")

    if not args.no_email:
        rng = random.Random(42)
        wrapped = [wrap_email(q, questions[(i + 7) % len(questions)], rng) for i, q in enumerate(questions)]
        cleaned = [build_query(subject, body) for subject, body in wrapped]
        raw = [f"{subject}\n{body}" for subject, body in wrapped]
        cleaned_vectors = embedder.embed(cleaned)
        result["email"] = {}
        for label, queries, qv in (("cleaned", cleaned, cleaned_vectors), ("raw", raw, embedder.embed(raw))):
            for mode in MODES:
                rankings, _, _ = run_queries(db, embedder, queries, params.with_mode(mode), qv)
                result["email"][f"{label}_{mode}"] = metrics(rankings, questions)
                print(f"{name} email {label} {mode}: {result['email'][f'{label}_{mode}']}")
        minmax = replace(params, fusion="minmax", vector_weight=0.6)
        rankings, _, _ = run_queries(db, embedder, cleaned, minmax, cleaned_vectors)
        result["email"]["cleaned_hybrid_minmax06"] = metrics(rankings, questions)
        print(f"{name} email cleaned hybrid_minmax06: {result['email']['cleaned_hybrid_minmax06']}")

    if args.explore:
        explore(db, embedder, questions, vectors, params)

    run = DatasetRun(name, db, embedder, questions, params, entries)
    for evaluator in EXTRA_EVALUATORS:
        result.update(evaluator(run))
    db.dispose()
    return result


def explore(db: Database, embedder: Embedder, questions: list[Question], vectors: np.ndarray,
            params: SearchParams) -> None:
    """Fusion variants: through HYBRID_SQL, then recomputed in Python from the two legs' candidates
    (a tuning aid, not reported)."""
    texts = [q.question for q in questions]
    for fusion, weights in (("relative", (0.3, 0.4, 0.5, 0.6, 0.7)), ("minmax", (0.5, 0.6, 0.7))):
        for wv in weights:
            for candidates in (20, 40, 80):
                variant = replace(params, fusion=fusion, vector_weight=wv, candidates=candidates)
                rankings, _, _ = run_queries(db, embedder, texts, variant, vectors)
                print(f"  SQL {fusion} wv={wv} candidates={candidates:<3} {metrics(rankings, questions)}")
    base = SearchParams(limit=200, candidates=40)
    legs: list[tuple[list[SearchHit], list[SearchHit]]] = []
    with db.session() as s:
        for q, v in zip(questions, vectors, strict=True):
            with s.begin():
                vec = search(s, q.question, embedder, base.with_mode("vector"), query_vector=v)
                fts = search(s, q.question, embedder, base.with_mode("fts"), query_vector=v)
            legs.append((vec, fts))

    def fuse(score_fn: Callable[[SearchHit | None, SearchHit | None, Any], float]) -> list[list[str]]:
        rankings = []
        for vec, fts in legs:
            by_id: dict[int, list[SearchHit | None]] = {}
            for h in vec:
                by_id.setdefault(h.chunk_id, [None, None])[0] = h
            for h in fts:
                by_id.setdefault(h.chunk_id, [None, None])[1] = h
            sims = [h.similarity or 0.0 for h in vec] or [0.0]
            fts_scores = [h.fts_score or 0.0 for h in fts] or [0.0]
            bounds = (min(sims), max(sims), min(fts_scores), max(fts_scores))
            scored = sorted(by_id.values(), key=lambda p: -score_fn(p[0], p[1], bounds))
            rankings.append(document_ranking([p[0] or p[1] for p in scored]))  # type: ignore[misc]
        return rankings

    variants: dict[str, Callable[[SearchHit | None, SearchHit | None, Any], float]] = {}
    for k in (10, 60):
        for wv in (0.33, 0.5, 0.67):
            variants[f"rrf k={k} wv={wv}"] = lambda v, f, _, k=k, wv=wv: (
                (wv / (k + v.vector_rank) if v else 0) + ((1 - wv) / (k + f.fts_rank) if f else 0)
            )
    for wv in (0.5, 0.55, 0.6, 0.65, 0.7):
        variants[f"minmax wv={wv}"] = lambda v, f, bounds, wv=wv: (
            wv * _scaled(v.similarity if v else None, bounds[0], bounds[1])
            + (1 - wv) * _scaled(f.fts_score if f else None, bounds[2], bounds[3])
        )
    for label, fn in variants.items():
        print(f"  {label:28s} {metrics(fuse(fn), questions)}")


def _scaled(value: float | None, low: float, high: float) -> float:
    """The min-max scaling of HYBRID_SQL's ``minmax`` fusion, for the Python re-fusion of ``explore``."""
    if value is None:
        return 0.0
    return 1.0 if high == low else (value - low) / (high - low)


def ensure_database(base_url: str, name: str) -> str:
    """A database per set on the same server (created once; re-runs reuse the ingested KB)."""
    engine = create_engine(to_sqlalchemy_url(base_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(to_sqlalchemy_url(base_url)).set(database=name).render_as_string(hide_password=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", nargs="+", default=["emanual_s10", "stackfaq"])
    parser.add_argument("--state-dir", type=Path, default=ROOT / "bench" / "work" / "rag")
    parser.add_argument("--database-url", default="", help="server to use instead of the embedded one")
    parser.add_argument("--max-questions", type=int, default=0, help="sample this many questions per set")
    parser.add_argument("--chunk-max-chars", type=int, default=ChunkParams().max_chars)
    parser.add_argument("--max-df", type=float, default=SearchParams().max_df, help="see SearchParams.max_df")
    parser.add_argument("--no-email", action="store_true", help="skip the email-wrapped variant")
    parser.add_argument("--explore", action="store_true", help="print fusion variants (SQL and Python)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rag.json")
    args = parser.parse_args(argv)

    if args.database_url:
        base_url = args.database_url
    else:
        args.state_dir.mkdir(parents=True, exist_ok=True)
        args.state_dir.chmod(0o755)
        base_url = embedded_url(args.state_dir)
    embedder = Embedder.from_setting("")
    results: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores shared with other jobs, no GPU",
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        "embedding_model": embedder.name,
        "search_params": SearchParams(max_df=args.max_df).__dict__,
        "chunk_params": ChunkParams(max_chars=args.chunk_max_chars).__dict__,
        "datasets": {},
    }
    for name in args.datasets:
        results["datasets"][name] = evaluate_set(name, args.data / name, base_url, embedder, args)
    if not args.max_questions:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.exists():  # keep other sets' (and the drafting hooks') earlier results
            previous = json.loads(args.out.read_text())
            previous.get("datasets", {}).update(results["datasets"])
            results["datasets"] = previous["datasets"]
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
