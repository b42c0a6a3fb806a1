"""Ingest time of a 5,000-section knowledge base (issue 5: "no more than a few minutes").

    HF_HUB_OFFLINE=1 .venv/bin/python bench/kb_ingest.py [--sections 5000]

The KB is generated from the two support-qa sets: emanual_s10 sections and stackfaq threads
(cut to 2,000 characters, about a long manual section), repeated with perturbations (sentence
order shuffled, a product variant in the title) so that every section is distinct text. It is
written as one JSONL file and ingested with ``KnowledgeBase.add`` into a fresh database, then
re-added (the unchanged check) and synced after changing 1 % of it; finally support-qa
questions are searched on it for latency. Results go to ``bench/results/kb_ingest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from daemon.config.kb import KBSettings  # noqa: E402
from daemon.db import migrate  # noqa: E402
from daemon.db.embedded import embedded_url, to_sqlalchemy_url  # noqa: E402
from daemon.db.session import Database  # noqa: E402
from daemon.kb.chunking import split_sentences  # noqa: E402
from daemon.kb.embeddings import Embedder, embedder_for  # noqa: E402
from daemon.kb.search import MODES, SearchParams, search  # noqa: E402
from daemon.kb.store import KnowledgeBase  # noqa: E402

DATA = Path("/work/shared/data/support-qa")
VARIANTS = ["S10", "S10e", "S10+", "Note 10", "A50", "Tab S6", "Watch", "Buds", "S20", "Fold"]


class TimedEmbedder(Embedder):
    """The product's embedder, with the time spent embedding added up."""

    seconds: float = 0.0
    texts: int = 0

    def embed(self, texts, progress=False):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return super().embed(texts, progress)
        finally:
            self.seconds += time.perf_counter() - t0
            self.texts += len(texts)


def generate(n: int, seed: int = 5) -> list[dict[str, str]]:
    pool = []
    for name in ("emanual_s10", "stackfaq"):
        for line in (DATA / name / "kb.jsonl").read_text().splitlines():
            entry = json.loads(line)
            pool.append({"title": entry["title"], "text": entry["text"][:2000]})
    rng = random.Random(seed)
    sections = []
    for i in range(n):
        base = pool[i % len(pool)]
        round_ = i // len(pool)
        sentences = split_sentences(base["text"])
        if round_:
            rng.shuffle(sentences)
        title = base["title"] if not round_ else f"{base['title']} ({VARIANTS[round_ % len(VARIANTS)]})"
        sections.append({"id": f"sec-{i:05d}", "title": title, "text": " ".join(sentences)})
    return sections


def fresh_database(base_url: str, name: str) -> str:
    engine = create_engine(to_sqlalchemy_url(base_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(to_sqlalchemy_url(base_url)).set(database=name).render_as_string(hide_password=False)


def search_latency(db: Database, embedder: Embedder, n: int) -> dict[str, Any]:
    """Search latency on the big KB: SQL alone per mode, and end to end (query embedding + SQL) for hybrid."""
    questions = [
        json.loads(line)["question"]
        for name in ("emanual_s10", "stackfaq")
        for line in (DATA / name / "questions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    questions = random.Random(3).sample(questions, min(n, len(questions)))
    vectors = embedder.embed(questions)
    out: dict[str, Any] = {"questions": len(questions), "load_average_1min_at_start": round(os.getloadavg()[0], 2)}

    def pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 1)

    with db.session() as s:
        for mode in MODES:
            params = SearchParams(mode=mode, limit=10)
            sql_ms, total_ms = [], []
            for question, vector in zip(questions, vectors, strict=True):
                with s.begin():
                    t0 = time.perf_counter()
                    search(s, question, embedder, params, query_vector=vector if mode != "fts" else None)
                    sql_ms.append((time.perf_counter() - t0) * 1000)
                if mode == "hybrid":
                    with s.begin():
                        t0 = time.perf_counter()
                        search(s, question, embedder, params)
                        total_ms.append((time.perf_counter() - t0) * 1000)
            out[mode] = {"sql_p50_ms": pct(sql_ms, 50), "sql_p95_ms": pct(sql_ms, 95)}
            if total_ms:
                out[mode] |= {"p50_ms": pct(total_ms, 50), "p95_ms": pct(total_ms, 95)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", type=int, default=5000)
    parser.add_argument("--state-dir", type=Path, default=ROOT / "bench" / "work" / "rag")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kb_ingest.json")
    parser.add_argument("--threads", type=int, default=KBSettings().embedding_threads,
                        help="[kb] embedding_threads (0 = one per core)")
    parser.add_argument("--batch-size", type=int, default=KBSettings().embedding_batch_size,
                        help="[kb] embedding_batch_size")
    parser.add_argument("--search-questions", type=int, default=200,
                        help="support-qa questions searched on the ingested KB for latency (0: skip)")
    args = parser.parse_args()

    kb_dir = ROOT / "bench" / "work" / f"ingest_{args.sections}"
    kb_dir.mkdir(parents=True, exist_ok=True)
    kb_file = kb_dir / "kb.jsonl"
    sections = generate(args.sections)
    kb_file.write_text("".join(json.dumps(s) + "\n" for s in sections))
    args.state_dir.mkdir(parents=True, exist_ok=True)
    args.state_dir.chmod(0o755)
    url = fresh_database(embedded_url(args.state_dir), f"ingest_{args.sections}")
    migrate.upgrade(url)
    db = Database.from_url(url)
    base = embedder_for(KBSettings(embedding_threads=args.threads, embedding_batch_size=args.batch_size))
    embedder = TimedEmbedder(
        path=base.path, name=base.name, backend=base.backend, batch_size=base.batch_size, threads=base.threads
    )
    embedder.embed(["warm up"])  # model load is not ingest time
    embedder.seconds = 0.0
    embedder.texts = 0
    kb = KnowledgeBase(db, embedder)

    load_at_start = os.getloadavg()[0]
    t0, cpu0 = time.perf_counter(), time.process_time()
    report = kb.add([kb_file])
    first, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    result: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPU cores (shared), no GPU",
        "sections": args.sections,
        "chars": sum(len(s["text"]) for s in sections),
        "chunks": report.chunks,
        "ingest_s": round(first, 1),
        "ingest_cpu_s": round(cpu, 1),  # CPU time of this process (all threads): the cost without contention
        "load_average_1min_at_start": round(load_at_start, 2),
        "load_average_1min": round(os.getloadavg()[0], 2),  # at the end of the first ingest
        "embedding_s": round(embedder.seconds, 1),
        "embedding_backend": embedder.backend,
        "embedding_batch_size": embedder.batch_size,
        "embedding_workers": embedder.workers if embedder.backend == "onnx" else None,
        "chunks_per_s": round(report.chunks / first, 1),
    }
    print(result, flush=True)

    t0 = time.perf_counter()
    again = kb.add([kb_file])
    result["unchanged_readd_s"] = round(time.perf_counter() - t0, 1)
    assert again.unchanged == args.sections, again

    rng = random.Random(1)
    for s in rng.sample(sections, args.sections // 100):
        s["text"] += " Updated."
    kb_file.write_text("".join(json.dumps(s) + "\n" for s in sections[:-10]))  # and 10 deleted
    t0 = time.perf_counter()
    synced = kb.sync(kb_dir)
    result["sync_1pct_changed_s"] = round(time.perf_counter() - t0, 1)
    result["sync_updated"], result["sync_removed"] = synced.updated, synced.removed
    print(result, flush=True)
    if args.search_questions:
        result["search"] = search_latency(db, embedder, args.search_questions)
        print(result["search"], flush=True)
    db.dispose()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
