"""Knowledge-base tables: documents, their chunks, and the model that embedded them.

A document is one answerable unit from a source: a file, or one entry of a JSONL file (then
``external_id`` is the entry's id). ``(source, external_id)`` identifies it across syncs and
``checksum`` says whether it must be re-chunked and re-embedded.

The embedding column has a fixed dimension because the HNSW index needs one. Which model
produced the vectors (and so the dimension) is kept in ``kb_embedding_model``: a single row
that the store compares with the configured model, re-embedding everything when they differ.

``tsv`` is a generated column so that what full-text search sees is defined once, here and in
the migration, not in every writer: the heading path (document title first) weighs A, the
body D. ``kb_postings`` unpacks it into an inverted index for BM25 (see ``daemon.kb.search``).
"""

from __future__ import annotations

from datetime import datetime

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column, relationship

from daemon.db.base import Base

EMBEDDING_DIM = 384
"""Dimension created by migration 0003 (the bundled MiniLM); another model changes it (see store)."""

FTS_CONFIG = "english"
"""The text-search configuration of ``kb_chunks.tsv``; queries must use the same one."""

TSV_EXPRESSION = (
    f"setweight(to_tsvector('{FTS_CONFIG}', heading_path), 'A') || setweight(to_tsvector('{FTS_CONFIG}', text), 'D')"
)

HNSW_INDEX = "ix_kb_chunks_embedding"
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64

AUDIENCES = ("public", "internal")


class KBDocument(Base):
    __tablename__ = "kb_documents"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_kb_documents_source"),
        CheckConstraint("audience IN ('public', 'internal')", name="audience"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    source: Mapped[str] = mapped_column(Text)  # absolute path or URI of the file
    external_id: Mapped[str] = mapped_column(Text, default="", server_default="")  # '' for whole files
    title: Mapped[str] = mapped_column(Text)
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 of what was chunked (incl. title, audience)
    audience: Mapped[str] = mapped_column(String(20), default="public", server_default="public")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    chunks: Mapped[list[KBChunk]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True
    )


class KBChunk(Base):
    __tablename__ = "kb_chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "ordinal", name="uq_kb_chunks_document_id"),
        Index("ix_kb_chunks_tsv", "tsv", postgresql_using="gin"),
        Index(
            HNSW_INDEX,
            "embedding",
            postgresql_using="hnsw",
            postgresql_with={"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION},
            postgresql_ops={"embedding": "vector_cosine_ops"},
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("kb_documents.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    heading_path: Mapped[str] = mapped_column(Text)  # "Title > Heading > Subheading"
    text: Mapped[str] = mapped_column(Text)
    embedding: Mapped[list[float] | None] = mapped_column(Vector(EMBEDDING_DIM))
    tsv: Mapped[str] = mapped_column(TSVECTOR, Computed(TSV_EXPRESSION, persisted=True))

    document: Mapped[KBDocument] = relationship(back_populates="chunks")


class KBPosting(Base):
    """One lexeme of one chunk: the inverted index that BM25 ranking reads.

    Written by the store from the chunk's ``tsv`` (``POSTINGS_SQL``), so full-text search and
    BM25 always agree on what a lexeme is. ``heading_tf`` counts the occurrences in the heading
    path (weight A), which the query may weigh extra.
    """

    __tablename__ = "kb_postings"
    __table_args__ = (Index("ix_kb_postings_chunk_id", "chunk_id"),)

    lexeme: Mapped[str] = mapped_column(Text, primary_key=True)
    chunk_id: Mapped[int] = mapped_column(ForeignKey("kb_chunks.id", ondelete="CASCADE"), primary_key=True)
    tf: Mapped[int] = mapped_column(SmallInteger)
    heading_tf: Mapped[int] = mapped_column(SmallInteger)
    chunk_length: Mapped[int] = mapped_column(Integer)  # distinct lexemes of the chunk (BM25's document length)


POSTINGS_SQL = """
INSERT INTO kb_postings (lexeme, chunk_id, tf, heading_tf, chunk_length)
SELECT u.lexeme, c.id, cardinality(u.positions),
       coalesce(array_length(array_positions(u.weights, 'A'), 1), 0), length(c.tsv)
FROM kb_chunks c CROSS JOIN LATERAL unnest(c.tsv) u
WHERE c.document_id = ANY(:document_ids)
"""


class KBEmbeddingModel(Base):
    """The one model whose vectors are in ``kb_chunks.embedding`` (a single row, id 1)."""

    __tablename__ = "kb_embedding_model"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, default=1)
    name: Mapped[str] = mapped_column(Text)
    dimension: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
