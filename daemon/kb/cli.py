"""``mailsense kb ...``: add, list, remove, sync and search the knowledge base.

Each handler opens the database (embedded server unless a URL is configured), brings the
schema up to date and loads the embedding model only when the command needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from daemon.db.session import Database
from daemon.kb.embeddings import embedder_for

if TYPE_CHECKING:
    from daemon.config import Settings
    from daemon.kb.store import IngestReport, KnowledgeBase


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kb = subparsers.add_parser("kb", help="knowledge base for support drafts").add_subparsers(
        dest="kb_command", required=True
    )

    add = kb.add_parser("add", help="ingest Markdown, text, HTML, PDF and JSONL files or folders")
    add.add_argument("paths", nargs="+", type=Path)
    audience = add.add_mutually_exclusive_group()
    audience.add_argument("--internal", action="store_true", help="mark these documents internal (never quoted)")
    audience.add_argument("--public", action="store_true",
                          help="mark these documents public (the only way to make an internal document public)")
    add.set_defaults(handler=cmd_add)

    lst = kb.add_parser("list", help="documents with audience and chunk count")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=cmd_list)

    rm = kb.add_parser("remove", help="remove a document by id, or every document of a source path")
    rm.add_argument("key", help="document id or source path")
    rm.set_defaults(handler=cmd_remove)

    sync = kb.add_parser("sync", help="make the KB match a folder: add new, re-embed changed, drop deleted")
    sync.add_argument("folder", type=Path)
    sync_audience = sync.add_mutually_exclusive_group()
    sync_audience.add_argument("--internal", action="store_true", help="mark the folder's documents internal")
    sync_audience.add_argument("--public", action="store_true", help="mark the folder's documents public")
    sync.set_defaults(handler=cmd_sync)

    search = kb.add_parser("search", help="what retrieval returns for a query")
    search.add_argument("query", nargs="+")
    search.add_argument("--mode", choices=("hybrid", "vector", "fts"), default="hybrid")
    search.add_argument("-k", "--limit", type=int, default=5)
    search.add_argument("--json", action="store_true")
    search.set_defaults(handler=cmd_search)



def knowledge_base(settings: Settings, db: Database) -> KnowledgeBase:
    from daemon.kb.chunking import ChunkParams
    from daemon.kb.store import KnowledgeBase

    params = ChunkParams(max_chars=settings.kb.chunk_max_chars, overlap_chars=settings.kb.chunk_overlap_chars)
    return KnowledgeBase(db, embedder_for(settings.kb), params, settings.kb.internal_paths)


def _print_report(report: IngestReport) -> int:
    print(
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {report.chunks} chunks embedded"
    )
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    return 1 if report.errors else 0


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    db = Database.open(settings, writable=True)
    try:
        kb = knowledge_base(settings, db)
        report = kb.add(args.paths, force_audience=_forced_audience(args), progress=sys.stderr.isatty())
        return _print_report(report)
    finally:
        db.dispose()


def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.kb.sources import SourceError

    db = Database.open(settings, writable=True)
    try:
        kb = knowledge_base(settings, db)
        try:
            report = kb.sync(
                args.folder,
                force_audience=_forced_audience(args),
                progress=sys.stderr.isatty(),
            )
        except SourceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return _print_report(report)
    finally:
        db.dispose()


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.kb.store import KnowledgeBase

    db = Database.open(settings, writable=False)
    try:
        docs = KnowledgeBase(db, embedder_for(settings.kb)).list_documents()  # model not loaded
    finally:
        db.dispose()
    if args.json:
        print(json.dumps([asdict(d) for d in docs], indent=2))
        return 0
    for d in docs:
        source = f"{d.source}#{d.external_id}" if d.external_id else d.source
        print(f"{d.id:>6}  {d.audience:<8}  {d.chunks:>4} chunks  {d.title[:60]:<60}  {source}")
    print(f"{len(docs)} documents")
    return 0


def cmd_remove(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.kb.store import KnowledgeBase

    db = Database.open(settings, writable=True)
    try:
        removed = KnowledgeBase(db, embedder_for(settings.kb)).remove(args.key)
    finally:
        db.dispose()
    print(f"{removed} documents removed")
    return 0 if removed else 1


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    from daemon.kb.search import search, search_params

    db = Database.open(settings, writable=False)
    try:
        embedder = embedder_for(settings.kb)
        params = search_params(settings.kb, args.limit).with_mode(args.mode)
        with db.session() as s, s.begin():
            hits = search(s, " ".join(args.query), embedder, params)
    finally:
        db.dispose()
    if args.json:
        print(json.dumps([asdict(h) for h in hits], indent=2))
        return 0
    for i, h in enumerate(hits, 1):
        cosine = f"{h.similarity:.2f}" if h.similarity is not None else "-"
        bm25 = f"{h.fts_score:.1f}" if h.fts_score is not None else "-"
        print(f"{i:>2}. {h.score:.3f} (cosine {cosine}, bm25 {bm25})  [{h.audience}] {h.heading_path}")
        print(f"    document {h.document_id}, chunk {h.chunk_id}: {' '.join(h.text.split())[:200]}")
    return 0


def _forced_audience(args: argparse.Namespace) -> str | None:
    """``--internal`` or ``--public``; without either, a stored document keeps an internal audience."""
    if args.internal:
        return "internal"
    return "public" if args.public else None
