"""Hybrid retrieval over ``kb_chunks``: one SQL query fuses a vector leg and a full-text leg.

``HYBRID_SQL`` is the only place where retrieval happens. Vector-only and FTS-only are the
same query with the other leg's candidate count set to 0, so what the benchmark measures
per leg is exactly what the hybrid fuses.

Full-text leg: BM25, not ``ts_rank``. ``ts_rank`` has no inverse document frequency, so on
email-length queries common words drown the rare ones that identify the answer (recall@5
0.72 against 0.94 with BM25 on emanual_s10). BM25 reads ``kb_postings``, an inverted index
that the store unpacks from each chunk's tsvector (so lexemes are exactly what
``to_tsvector`` makes of the query), with document frequencies counted at query time and
heading (and title) occurrences counting extra. Any query lexeme matches (OR, as in BM25):
``websearch_to_tsquery`` ANDs its words and so matches nothing for a three-line question,
and unnesting every matching tsvector per query cost 13 ms on 1,000 chunks.

Fusion (``relative``): every candidate of either leg is scored on both legs (its exact
cosine, and its BM25: 0 without a query term). The cosine is min-max scaled over the vector
leg's candidates. BM25 is divided by the query weight, the IDF sum of the query terms that
the vector leg's candidates contain: what a chunk holding each of those terms once at
average length scores. So BM25 keeps its absolute meaning (a chunk sharing one common word
with a paraphrased question scores a small fraction, one with all the rare terms about 1),
and words that no semantically near chunk uses (an email's greeting or context line) do not
dilute it. The two are mixed half and half. With both legs min-max scaled (``minmax``, the
previous default at 60/40) the best BM25 candidate always scored 1, and no weight suited
both a manual with exact terms (BM25 better) and paraphrased FAQ questions (vector better).
Textbook RRF (k=60) ignores how far apart the scores are and lost to the vector leg on
stackfaq; rank fusion with other k and weights, a bounded full-text bonus, z-score fusion,
document-level aggregation and other references for BM25 were measured too
(docs/benchmarks.md, "Retrieval"). ``fusion="minmax"`` and ``"rrf"`` are kept for that
comparison.

``score`` is relative to the other candidates of the same query, so it says nothing about
whether the KB can answer at all: use ``similarity`` (the absolute cosine) for confidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal

from sqlalchemy import text

from daemon.kb.tables import FTS_CONFIG

if TYPE_CHECKING:
    import numpy as np
    from sqlalchemy.orm import Session

    from daemon.config.kb import KBSettings
    from daemon.kb.embeddings import Embedder

Mode = Literal["hybrid", "vector", "fts"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "fts")
Fusion = Literal["relative", "minmax", "rrf"]

MAX_QUERY_TERMS = 64
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")

HYBRID_SQL = text(
    f"""
WITH vector_leg AS (
    SELECT id, row_number() OVER (ORDER BY distance, id) AS rank, 1 - distance AS similarity
    FROM (
        SELECT c.id, c.embedding <=> CAST(:embedding AS vector) AS distance
        FROM kb_chunks c
        ORDER BY distance
        LIMIT :vector_k
    ) nearest
),
query_terms AS (
    -- The query's lexemes with their document frequency and BM25 IDF, read from the postings.
    -- Terms in more than max_df of the chunks barely change the order but cost the most rows.
    SELECT p.lexeme, ln(1 + (n.chunks - count(*) + 0.5) / (count(*) + 0.5)) AS idf
    FROM kb_postings p CROSS JOIN kb_corpus_stats n
    WHERE p.lexeme IN (SELECT lexeme FROM unnest(to_tsvector('{FTS_CONFIG}', :fts_text)))
    GROUP BY p.lexeme, n.chunks
    HAVING count(*) <= greatest(:max_df * n.chunks, 20)
),
bm25 AS (
    -- BM25 of every chunk with a query term; an occurrence in the heading path (title first)
    -- counts 1 + heading_boost times.
    SELECT p.chunk_id AS id,
           sum(qt.idf * (p.tf + :heading_boost * p.heading_tf) * (:k1 + 1)
               / (p.tf + :heading_boost * p.heading_tf
                  + :k1 * (1 - :b + :b * p.chunk_length / greatest(n.avg_length, 1)))) AS fts_score
    FROM kb_postings p
    JOIN query_terms qt USING (lexeme)
    CROSS JOIN kb_corpus_stats n
    GROUP BY p.chunk_id
),
fts_leg AS (
    SELECT id, row_number() OVER (ORDER BY fts_score DESC, id) AS rank, fts_score
    FROM (SELECT id, fts_score FROM bm25 ORDER BY fts_score DESC, id LIMIT :fts_k) best
),
candidates AS (
    -- Every candidate of either leg, scored on both: its cosine and its BM25 (none without a
    -- query term), not just on the leg that found it.
    SELECT id, v.rank AS vector_rank, f.rank AS fts_rank,
           1 - (c.embedding <=> CAST(:embedding AS vector)) AS similarity, b.fts_score
    FROM vector_leg v
    FULL OUTER JOIN fts_leg f USING (id)
    JOIN kb_chunks c USING (id)
    LEFT JOIN bm25 b USING (id)
),
query_weight AS (
    -- BM25's own scale: what a chunk scores that holds each query term once at average length.
    -- Only terms that the vector leg's candidates contain count, so words that no semantically
    -- near chunk uses (greetings, an email's context lines) do not dilute a real match.
    SELECT greatest(sum(idf), 1e-9) AS weight
    FROM query_terms qt
    WHERE NOT EXISTS (SELECT FROM vector_leg)
       OR EXISTS (SELECT FROM kb_postings p WHERE p.lexeme = qt.lexeme AND p.chunk_id IN (SELECT id FROM vector_leg))
),
bounds AS (
    SELECT (SELECT min(similarity) FROM vector_leg) AS min_sim, (SELECT max(similarity) FROM vector_leg) AS max_sim,
           (SELECT min(fts_score) FROM fts_leg) AS min_fts, (SELECT max(fts_score) FROM fts_leg) AS max_fts,
           (SELECT weight FROM query_weight) AS query_weight
),
scaled AS (
    SELECT c.*,
        -- relative: the cosine min-max scaled over the vector leg (below its last: 0), and BM25
        -- against the query weight, so a weak full-text match stays weak.
        CASE WHEN similarity IS NULL OR max_sim IS NULL THEN 0 WHEN max_sim = min_sim THEN 1
             ELSE greatest((similarity - min_sim) / (max_sim - min_sim), 0) END AS vector_scaled,
        coalesce(fts_score / query_weight, 0) AS fts_relative,
        -- minmax (the previous default): each leg min-max scaled over its own candidates only.
        CASE WHEN vector_rank IS NULL THEN 0 WHEN max_sim = min_sim THEN 1
             ELSE (similarity - min_sim) / (max_sim - min_sim) END AS vector_minmax,
        CASE WHEN fts_rank IS NULL THEN 0 WHEN max_fts = min_fts THEN 1
             ELSE (fts_score - min_fts) / (max_fts - min_fts) END AS fts_minmax
    FROM candidates c CROSS JOIN bounds
),
fused AS (
    SELECT *,
        CASE :fusion
            WHEN 'rrf' THEN coalesce(:vector_weight / (:rrf_k + vector_rank), 0)
                          + coalesce((1 - :vector_weight) / (:rrf_k + fts_rank), 0)
            WHEN 'minmax' THEN :vector_weight * vector_minmax + (1 - :vector_weight) * fts_minmax
            ELSE :vector_weight * vector_scaled + (1 - :vector_weight) * fts_relative
        END AS score
    FROM scaled
)
SELECT f.id AS chunk_id, c.document_id, d.title, c.heading_path, c.text, d.audience, d.source,
       d.external_id, f.score, f.vector_rank, f.similarity, f.fts_rank, f.fts_score
FROM fused f
JOIN kb_chunks c ON c.id = f.id
JOIN kb_documents d ON d.id = c.document_id
ORDER BY f.score DESC, f.id
LIMIT :limit
"""
)


@dataclass(frozen=True)
class SearchParams:
    mode: Mode = "hybrid"
    limit: int = 10
    candidates: int = 40  # per leg
    fusion: Fusion = "relative"
    vector_weight: float = 0.5  # share of the vector leg; the full-text leg gets the rest
    k1: float = 1.2  # BM25
    b: float = 0.75  # BM25
    heading_boost: float = 2.0  # extra term frequency of a heading (and title) occurrence
    max_df: float = 0.25  # query terms in more of the chunks than this are ignored
    rrf_k: int = 60  # rrf only
    ef_search: int = 64

    def with_mode(self, mode: Mode) -> SearchParams:
        return replace(self, mode=mode)


@dataclass(frozen=True)
class SearchHit:
    chunk_id: int
    document_id: int
    title: str
    heading_path: str
    text: str
    audience: str
    source: str
    external_id: str
    score: float  # fused; compare it only with the other hits of the same query; higher is better
    vector_rank: int | None  # rank in the vector leg's candidates, None when that leg did not find it
    similarity: float | None  # cosine similarity to the query (None only in fts mode)
    fts_rank: int | None  # rank in the full-text leg's candidates, None when that leg did not find it
    fts_score: float | None  # BM25 score (None: no query term in the chunk, or vector mode)


def fts_terms(query: str) -> str:
    """The query's distinct words, at most ``MAX_QUERY_TERMS``, for ``to_tsvector`` (no operators)."""
    words: list[str] = []
    seen: set[str] = set()
    for word in _WORD.findall(query.lower()):
        if word not in seen:
            seen.add(word)
            words.append(word)
            if len(words) >= MAX_QUERY_TERMS:
                break
    return " ".join(words)


def search(
    session: Session,
    query: str,
    embedder: Embedder | None = None,
    params: SearchParams | None = None,
    query_vector: np.ndarray | None = None,
) -> list[SearchHit]:
    """Best chunks for ``query``, best first (several chunks of one document may appear).

    Pass ``query_vector`` to reuse an embedding (benchmarks, several searches per email);
    otherwise ``embedder`` embeds the query. Runs inside the session's transaction and sets
    ``hnsw.ef_search`` for that transaction only.
    """
    params = params or SearchParams()
    vector_k = 0 if params.mode == "fts" else params.candidates
    fts_k = 0 if params.mode == "vector" else params.candidates
    terms = fts_terms(query)
    if not terms:
        fts_k = 0
    if vector_k and query_vector is None:
        if embedder is None:
            raise ValueError("search needs an embedder or a query_vector for the vector leg")
        query_vector = embedder.embed_query(query)
    if not vector_k and not fts_k:
        return []
    # For this transaction only. The index scan returns at most ef_search rows: keep it above the
    # candidate count. And plan for each query's own terms: psycopg prepares a statement after a
    # few runs, and Postgres' generic plan for it (which cannot see the terms) took 45 ms instead
    # of 11 ms per search on a 10,000-chunk KB.
    session.execute(
        text("SELECT set_config('hnsw.ef_search', :ef, true),"
             " set_config('plan_cache_mode', 'force_custom_plan', true)"),
        {"ef": str(max(params.ef_search, vector_k))},
    )
    rows = session.execute(
        HYBRID_SQL,
        {
            "embedding": vector_literal(query_vector) if vector_k else None,
            "fts_text": terms if fts_k else "",  # vector mode: no BM25 in the score
            "vector_k": vector_k,
            "fts_k": fts_k,
            "fusion": params.fusion,
            "vector_weight": params.vector_weight,
            "rrf_k": params.rrf_k,
            "k1": params.k1,
            "b": params.b,
            "heading_boost": params.heading_boost,
            "max_df": params.max_df,
            "limit": params.limit,
        },
    ).mappings()
    return [SearchHit(**row) for row in rows]


def vector_literal(vector: np.ndarray | None) -> str | None:
    """pgvector's text form of a vector (``CAST(:x AS vector)``); also used by the store."""
    if vector is None:
        return None
    return "[" + ",".join(f"{x:.7g}" for x in vector.tolist()) + "]"


def search_params(kb: KBSettings, limit: int) -> SearchParams:
    """The retrieval parameters of ``[kb]`` (as ``mailsense kb search`` uses them), hybrid mode.

    Every ``SearchParams`` field that ``[kb]`` also has is taken from it (``candidates`` is
    ``search_candidates`` there), so a tuning knob added to ``[kb]`` reaches drafts too.
    """
    names = {f.name for f in fields(SearchParams)} - {"mode", "limit"}
    values = {name: getattr(kb, name) for name in names if name in type(kb).model_fields}
    values["candidates"] = kb.search_candidates
    return SearchParams(mode="hybrid", limit=limit, **values)
