"""The int8 ONNX embedder must agree with sentence-transformers on the same checkpoint."""

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
