"""Configuration of the knowledge base: ``[kb]``."""

from typing import Literal

from pydantic import Field

from daemon.config.base import Section


class KBSettings(Section):
    embedding_model: str = Field(
        "", description="local path of a sentence-transformers model; empty means the bundled MiniLM"
    )
    embedding_backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description="'onnx' (bundled int8 MiniLM, fast on CPU) or 'torch' (sentence-transformers); "
        "a custom embedding_model always uses torch. Changing it re-embeds the KB",
    )
    embedding_threads: int = Field(
        0, ge=0, le=64, description="onnx: batches embedded in parallel, one CPU thread each (0 = one per core)"
    )
    embedding_batch_size: int = Field(16, ge=1, le=1024, description="texts embedded per batch (1-1024)")
    chunk_max_chars: int = Field(
        500, ge=200, le=8000, description="largest chunk in characters (200-8000; MiniLM reads about 1000)"
    )
    chunk_overlap_chars: int = Field(
        150, ge=0, le=1000, description="characters repeated from the previous chunk when a section is split"
    )
    internal_paths: list[str] = Field(
        default_factory=lambda: ["*/internal/*", "*.internal.*"],
        description="glob patterns of paths whose documents are internal (may guide drafts, never quoted)",
    )
    search_candidates: int = Field(40, ge=5, le=1000, description="candidates per retrieval leg (5-1000)")
    vector_weight: float = Field(
        0.5, ge=0, le=1, description="share of the vector leg in hybrid search; full text gets the rest (0-1)"
    )
    ef_search: int = Field(64, ge=10, le=1000, description="HNSW ef_search per query (10-1000; higher = exacter)")
