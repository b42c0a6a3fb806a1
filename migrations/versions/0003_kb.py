"""Knowledge base: documents, chunks (vector(384) + HNSW, generated tsvector + GIN), BM25 postings.

The vector dimension is that of the bundled MiniLM; ``kb_embedding_model`` records which model
filled the column, so the store can re-embed (and retype the column) when the configured
model changes. The tsvector expression must match ``daemon.kb.tables.TSV_EXPRESSION``.

Revision ID: 0003_kb
Revises: 0002_spam
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

revision: str = "0003_kb"
down_revision: str | None = "0002_spam"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

TZ = sa.DateTime(timezone=True)
TSV = "setweight(to_tsvector('english', heading_path), 'A') || setweight(to_tsvector('english', text), 'D')"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.create_table(
        "kb_documents",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("external_id", sa.Text, server_default="", nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("audience", sa.String(20), server_default="public", nullable=False),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("source", "external_id", name="uq_kb_documents_source"),
        sa.CheckConstraint("audience IN ('public', 'internal')", name="ck_kb_documents_audience"),
    )
    op.create_table(
        "kb_chunks",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("document_id", sa.BigInteger, sa.ForeignKey("kb_documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("heading_path", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("embedding", Vector(384)),
        sa.Column("tsv", postgresql.TSVECTOR, sa.Computed(TSV, persisted=True), nullable=False),
        sa.UniqueConstraint("document_id", "ordinal", name="uq_kb_chunks_document_id"),
    )
    op.create_index("ix_kb_chunks_tsv", "kb_chunks", ["tsv"], postgresql_using="gin")
    op.create_index(
        "ix_kb_chunks_embedding",
        "kb_chunks",
        ["embedding"],
        postgresql_using="hnsw",
        postgresql_with={"m": 16, "ef_construction": 64},
        postgresql_ops={"embedding": "vector_cosine_ops"},
    )
    # An inverted index for BM25 ranking of the full-text leg (ts_rank has no IDF, and
    # unnesting every matching tsvector per query is too slow): one row per chunk and lexeme,
    # written by the store from the chunk's tsvector.
    op.create_table(
        "kb_postings",
        sa.Column("lexeme", sa.Text, nullable=False),
        sa.Column("chunk_id", sa.BigInteger, sa.ForeignKey("kb_chunks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tf", sa.SmallInteger, nullable=False),
        sa.Column("heading_tf", sa.SmallInteger, nullable=False),
        sa.Column("chunk_length", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("lexeme", "chunk_id", name="pk_kb_postings"),
    )
    op.create_index("ix_kb_postings_chunk_id", "kb_postings", ["chunk_id"])
    # Corpus size and mean chunk length for BM25, refreshed by the store after every change.
    op.execute(
        "CREATE MATERIALIZED VIEW kb_corpus_stats AS "
        "SELECT 1 AS id, count(*) AS chunks, coalesce(avg(length(tsv)), 0)::float8 AS avg_length "
        "FROM kb_chunks"
    )
    op.execute("CREATE UNIQUE INDEX ix_kb_corpus_stats_id ON kb_corpus_stats (id)")
    op.create_table(
        "kb_embedding_model",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("dimension", sa.Integer, nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_kb_embedding_model_single_row"),
    )


def downgrade() -> None:
    op.drop_table("kb_embedding_model")
    op.execute("DROP MATERIALIZED VIEW kb_corpus_stats")
    op.drop_table("kb_postings")
    op.drop_table("kb_chunks")
    op.drop_table("kb_documents")
