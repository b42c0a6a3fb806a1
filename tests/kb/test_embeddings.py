"""The int8 ONNX embedder must agree with sentence-transformers on the same checkpoint."""

import dataclasses

import numpy as np

from daemon.kb.embeddings import ONNX_MODEL_NAME, Embedder


def test_onnx_matches_torch_and_keeps_order(embedder: Embedder):
    assert embedder.backend == "onnx" and embedder.name == ONNX_MODEL_NAME
    texts = [
        "How do I turn on the GPS?",
        "Refunds are paid within 14 days to the original payment method. " * 3,
        "Wi-Fi",
    ]
    onnx = embedder.embed(texts, progress=False)
    torch = Embedder.from_setting("", backend="torch").embed(texts)
    assert onnx.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, rtol=1e-5)
    assert (onnx * torch).sum(axis=1).min() > 0.99  # same model, int8 weights
    assert embedder.embed([]).shape == (0, 384)


def test_parallel_batches_give_each_text_its_own_vector(embedder: Embedder):
    """Batches sorted by token count and run on two threads: same vectors as one text at a time, same order."""
    texts = [("Wi-Fi " * (i % 7 + 1)) + f"question number {i} about the router and the battery" for i in range(37)]
    texts.append("word " * 400)  # longer than the 256 tokens the model reads: cut, not an error
    parallel = dataclasses.replace(embedder, batch_size=4, threads=2, _model=None, _tokenizer=None)
    assert parallel.workers == 2
    together = parallel.embed(texts, progress=True)
    alone = np.stack([embedder.embed([t])[0] for t in texts])
    assert together.shape == (38, 384)
    assert (together * alone).sum(axis=1).min() > 0.99999
