"""Adding, syncing, listing and removing knowledge-base documents.

A document is identified by ``(source, external_id)``; its checksum covers the text, title,
audience and the chunking parameters, so ``add`` of an unchanged file is a no-op, a changed
one is re-chunked and re-embedded, and ``sync`` additionally drops documents whose file (or
JSONL entry) is gone. Files that fail to read are reported and never count as deleted.

Work is done in groups of documents, each group embedded in batches and committed in one
transaction: an interrupted ingest keeps what it finished and the next run skips it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session

from daemon.db.session import Database
from daemon.kb.chunking import Chunk, ChunkParams, chunk_document, embed_text
from daemon.kb.embeddings import Embedder
from daemon.kb.search import vector_literal
from daemon.kb.sources import DEFAULT_INTERNAL_PATTERNS, SourceDocument, SourceError, iter_files, read_file
from daemon.kb.tables import (
    HNSW_EF_CONSTRUCTION,
    HNSW_INDEX,
    HNSW_M,
    POSTINGS_SQL,
    KBChunk,
    KBDocument,
    KBEmbeddingModel,
)

log = logging.getLogger(__name__)

GROUP_SIZE = 500  # documents per transaction
REEMBED_BATCH = 512  # chunks per round trip when re-embedding after a model change

SET_EMBEDDING_SQL = text("UPDATE kb_chunks SET embedding = CAST(:embedding AS vector) WHERE id = :id")
# CONCURRENTLY: searches keep reading the old statistics while the new ones are computed.
REFRESH_STATS_SQL = text("REFRESH MATERIALIZED VIEW CONCURRENTLY kb_corpus_stats")


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0  # chunks written
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    source: str
    external_id: str
    title: str
    audience: str
    chunks: int
    updated_at: str


class KnowledgeBase:
    """The KB operations of one database with one embedding model."""

    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        chunk_params: ChunkParams | None = None,
        internal_patterns: Sequence[str] = DEFAULT_INTERNAL_PATTERNS,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.chunk_params = chunk_params or ChunkParams()
        self.internal_patterns = tuple(internal_patterns)

    # -- the embedding model --------------------------------------------------------------

    def ensure_model(self, progress: bool = False) -> int:
        """Make the stored vectors come from ``self.embedder``, re-embedding all if not; returns the count."""
        name, dim = self.embedder.name, self.embedder.dimension
        with self.db.session() as s, s.begin():
            row = s.get(KBEmbeddingModel, 1, with_for_update=True)
            if row is not None and row.name == name and row.dimension == dim:
                return 0
            count = s.scalar(select(func.count()).select_from(KBChunk)) or 0
            if row is None and count == 0:
                s.add(KBEmbeddingModel(id=1, name=name, dimension=dim))
                return 0
            stored_dim = row.dimension if row is not None else dim
            log.warning("embedding model changed to %s (%d dims): re-embedding %d chunks", name, dim, count)
            if stored_dim != dim:
                _retype_embedding_column(s, dim)
            self._reembed_all(s, progress)
            if row is None:
                s.add(KBEmbeddingModel(id=1, name=name, dimension=dim))
            else:
                row.name, row.dimension = name, dim
            return count

    def _reembed_all(self, s: Session, progress: bool) -> None:
        rows = s.execute(select(KBChunk.id, KBChunk.heading_path, KBChunk.text).order_by(KBChunk.id)).all()
        for start in range(0, len(rows), REEMBED_BATCH):
            batch = rows[start : start + REEMBED_BATCH]
            vectors = self.embedder.embed([embed_text(r.heading_path, r.text) for r in batch], progress=progress)
            s.execute(
                SET_EMBEDDING_SQL,
                [{"id": r.id, "embedding": vector_literal(v)} for r, v in zip(batch, vectors, strict=True)],
            )

    # -- add / sync / remove ----------------------------------------------------------------

    def add(self, paths: Iterable[Path], force_audience: str | None = None, progress: bool = False) -> IngestReport:
        """Ingest files and folders: new documents are added, changed ones replaced, the rest skipped."""
        report = IngestReport()
        docs: list[SourceDocument] = []
        for path in paths:
            docs.extend(self._read(path, force_audience, report))
        self._upsert(docs, report, progress)
        return report

    def sync(self, folder: Path, force_audience: str | None = None, progress: bool = False) -> IngestReport:
        """Make the KB match ``folder``: add new, re-embed changed, drop what is no longer there."""
        folder = folder.resolve()
        if not folder.is_dir():
            raise SourceError(f"{folder}: not a folder")
        report = IngestReport()
        docs = self._read(folder, force_audience, report)
        self._upsert(docs, report, progress)
        failed = {e.split(":", 1)[0] for e in report.errors}
        seen = {(d.source, d.external_id) for d in docs}
        prefix = str(folder).rstrip("/") + "/"
        with self.db.session() as s, s.begin():
            stored = s.execute(
                select(KBDocument.id, KBDocument.source, KBDocument.external_id).where(
                    func.starts_with(KBDocument.source, prefix)
                )
            ).all()
            gone = [r.id for r in stored if (r.source, r.external_id) not in seen and r.source not in failed]
            if gone:
                s.execute(delete(KBDocument).where(KBDocument.id.in_(gone)))
        report.removed = len(gone)
        if gone:
            refresh_corpus_stats(self.db)
        return report

    def remove(self, key: str) -> int:
        """Remove by document id (digits) or by source path (all its documents); returns the count."""
        with self.db.session() as s, s.begin():
            if key.isdigit():
                condition = KBDocument.id == int(key)
            else:
                candidates = {key, str(Path(key).expanduser().resolve())}
                condition = KBDocument.source.in_(candidates)
            removed = len(s.execute(delete(KBDocument).where(condition).returning(KBDocument.id)).all())
        if removed:
            refresh_corpus_stats(self.db)
        return removed

    def list_documents(self) -> list[DocumentInfo]:
        with self.db.session() as s:
            rows = s.execute(
                select(
                    KBDocument.id,
                    KBDocument.source,
                    KBDocument.external_id,
                    KBDocument.title,
                    KBDocument.audience,
                    func.count(KBChunk.id).label("chunks"),
                    KBDocument.updated_at,
                )
                .outerjoin(KBChunk, KBChunk.document_id == KBDocument.id)
                .group_by(KBDocument.id)
                .order_by(KBDocument.source, KBDocument.external_id)
            ).all()
        return [
            DocumentInfo(r.id, r.source, r.external_id, r.title, r.audience, r.chunks, r.updated_at.isoformat())
            for r in rows
        ]

    # -- internals ----------------------------------------------------------------------------

    def _read(self, path: Path, force_audience: str | None, report: IngestReport) -> list[SourceDocument]:
        docs: list[SourceDocument] = []
        try:
            files = list(iter_files(path))
        except SourceError as exc:
            report.errors.append(str(exc))
            return docs
        for file in files:
            try:
                docs.extend(read_file(file, force_audience, self.internal_patterns))
            except SourceError as exc:
                # Keyed by the resolved path so sync can tell "unreadable" from "deleted".
                report.errors.append(f"{file.resolve()}: {str(exc).split(': ', 1)[-1]}")
        return docs

    def _upsert(self, docs: list[SourceDocument], report: IngestReport, progress: bool) -> None:
        self.ensure_model(progress=progress)
        salt = self.chunk_params.salt()
        for start in range(0, len(docs), GROUP_SIZE):
            group = docs[start : start + GROUP_SIZE]
            with self.db.session() as s, s.begin():
                existing = {
                    (r.source, r.external_id): (r.id, r.checksum, r.audience)
                    for r in s.execute(
                        select(
                            KBDocument.id, KBDocument.source, KBDocument.external_id, KBDocument.checksum,
                            KBDocument.audience,
                        ).where(KBDocument.source.in_({d.source for d in group}))
                    )
                }
                todo: list[tuple[SourceDocument, str, int | None]] = []
                for doc in group:
                    doc_id, stored, audience = existing.get((doc.source, doc.external_id), (None, None, None))
                    if audience == "internal" and doc.audience == "public" and not doc.audience_explicit:
                        doc = replace(doc, audience="internal")
                    checksum = doc.checksum(salt)
                    if stored == checksum:
                        report.unchanged += 1
                    else:
                        todo.append((doc, checksum, doc_id))
                if not todo:
                    continue
                chunked = [
                    (doc, checksum, old_id, chunk_document(doc, self.chunk_params)) for doc, checksum, old_id in todo
                ]
                texts = [c.embed_text for *_, chunks in chunked for c in chunks]
                vectors = iter(self.embedder.embed(texts, progress=progress))
                chunk_rows: list[dict[str, object]] = []
                for doc, checksum, old_id, chunks in chunked:
                    doc_id = self._write_document(s, doc, checksum, old_id)
                    if old_id is None:
                        report.added += 1
                    else:
                        report.updated += 1
                    chunk_rows.extend(_chunk_row(doc_id, c, next(vectors)) for c in chunks)
                if chunk_rows:
                    s.execute(insert(KBChunk), chunk_rows)
                    # _chunk_row puts the int document id in each row (typed object, as insert() takes them)
                    doc_ids = sorted({cast(int, r["document_id"]) for r in chunk_rows})
                    s.execute(text(POSTINGS_SQL), {"document_ids": doc_ids})
                report.chunks += len(chunk_rows)
            log.info("kb: %d of %d documents processed", min(start + GROUP_SIZE, len(docs)), len(docs))
        if report.added or report.updated:
            refresh_corpus_stats(self.db)

    @staticmethod
    def _write_document(s: Session, doc: SourceDocument, checksum: str, doc_id: int | None) -> int:
        values = {"title": doc.title, "checksum": checksum, "audience": doc.audience}
        if doc_id is None:
            return s.execute(
                insert(KBDocument)
                .values(source=doc.source, external_id=doc.external_id, **values)
                .returning(KBDocument.id)
            ).scalar_one()
        s.execute(delete(KBChunk).where(KBChunk.document_id == doc_id))
        # a plain UPDATE (synchronize_session=False): this session holds no loaded KBDocument to refresh
        s.execute(update(KBDocument).where(KBDocument.id == doc_id).values(**values, updated_at=func.now())
                  .execution_options(synchronize_session=False))
        return doc_id


def refresh_corpus_stats(db: Database) -> None:
    """Recompute chunk count and mean length for BM25 (searches keep running meanwhile)."""
    with db.session() as s, s.begin():
        s.execute(REFRESH_STATS_SQL)


def _chunk_row(document_id: int, chunk: Chunk, vector: object) -> dict[str, object]:
    return {
        "document_id": document_id,
        "ordinal": chunk.ordinal,
        "heading_path": chunk.heading,
        "text": chunk.text,
        "embedding": vector,
    }


def _retype_embedding_column(s: Session, dim: int) -> None:
    """A model with another dimension: the column and its HNSW index are rebuilt for it."""
    s.execute(text(f"DROP INDEX IF EXISTS {HNSW_INDEX}"))
    s.execute(text(f"ALTER TABLE kb_chunks ALTER COLUMN embedding TYPE vector({int(dim)}) USING NULL"))
    s.execute(
        text(
            f"CREATE INDEX {HNSW_INDEX} ON kb_chunks USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
        )
    )
