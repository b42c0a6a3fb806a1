"""The fine-tuned transformer at inference: ONNX Runtime by default, PyTorch as the fallback.

Paths, all measured on the SpamAssassin test split (docs/benchmarks.md):

* ``model.onnx``: the fp32 graph exported at training time; the same logits as PyTorch (max
  difference ~3e-6) and no faster on its own on 2 cores, but it needs no torch at run time.
* ``model.int8.onnx``: the same graph with int8 weights (``onnxruntime.quantization``), about
  2x faster but not the same scores (mean logit difference 0.03, max ~3). It is only used to
  *screen*: :class:`daemon.spam.model.SpamModel` takes the int8 logit where it cannot change the
  verdict and re-scores the close calls in fp32, so verdicts match the fp32 model. It always runs
  one message at a time, because dynamic quantisation picks its scale per batch and a message's
  score would otherwise depend on its neighbours.
* PyTorch fp32, or PyTorch with dynamic int8 (``spam.int8``, measured less accurate).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from daemon.cpu import available_cores, onnx_session

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
RUNTIMES = ("auto", "onnx", "torch")


def export_onnx(directory: Path) -> tuple[Path, Path]:
    """Write ``model.onnx`` and ``model.int8.onnx`` beside the fine-tuned weights.

    Done once when a version is trained (it needs the ``onnx`` package), so the daemon itself
    only needs ``onnxruntime``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForSequenceClassification.from_pretrained(str(directory)).eval()
    sample = tokenizer(["an example message", "a second, longer example message"], padding=True,
                       return_tensors="pt")
    fp32, int8 = directory / ONNX_FILE, directory / ONNX_INT8_FILE
    dims = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about data-dependent branches in the mask code
        torch.onnx.export(
            model, (sample["input_ids"], sample["attention_mask"]), str(fp32),
            input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": dims, "attention_mask": dims, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
        logging.disable(logging.WARNING)  # quantize_dynamic logs a pre-processing tip on the root logger
        try:
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(logging.NOTSET)
    return fp32, int8


class TransformerScorer:
    """Spam logit (logit[spam] - logit[ham]) per text, through ONNX Runtime or PyTorch."""

    def __init__(self, directory: Path, max_length: int, quantize: bool = False, runtime: str = "auto",
                 threads: int | None = None) -> None:
        from transformers import AutoTokenizer

        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        onnx_path = directory / ONNX_FILE
        if runtime == "onnx" and not onnx_path.exists():
            raise FileNotFoundError(f"{onnx_path} does not exist; use runtime 'torch' or retrain the version")
        self.runtime = "onnx" if runtime != "torch" and not quantize and onnx_path.exists() else "torch"
        self.quantized = quantize and self.runtime == "torch"
        self._session: Any = None
        self._screen: Any = None
        self.model: Any = None
        threads = threads or available_cores()
        if self.runtime == "onnx":
            self._session = onnx_session(onnx_path, threads)
            if runtime == "auto" and (directory / ONNX_INT8_FILE).exists():
                self._screen = onnx_session(directory / ONNX_INT8_FILE, threads)
            return
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(str(directory))
        model.eval()
        if quantize:
            with warnings.catch_warnings():
                # torch marks the quantized tensor API as deprecated; it is still its fastest CPU path.
                warnings.simplefilter("ignore")
                # torch leaves quantize_dynamic unannotated
                model = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                    model, {torch.nn.Linear}, dtype=torch.qint8
                )
        self.model = model

    @property
    def path_name(self) -> str:
        """'onnx+int8-screen', 'onnx', 'torch-fp32' or 'torch-int8'."""
        if self.runtime == "onnx":
            return "onnx+int8-screen" if self._screen is not None else "onnx"
        return "torch-int8" if self.quantized else "torch-fp32"

    @property
    def can_screen(self) -> bool:
        return self._screen is not None

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        # with a list of texts and no return_tensors, input_ids is one list of token ids per text
        ids: list[list[int]] = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return ids

    def _run(self, session: Any, batch_ids: list[list[int]]) -> NDArray[np.float32]:
        if len(batch_ids) == 1:  # the screen's case: nothing to pad, skip the tokenizer's pad()
            input_ids = np.asarray(batch_ids, dtype=np.int64)
            attention_mask = np.ones_like(input_ids)
        else:
            batch = self.tokenizer.pad({"input_ids": batch_ids}, return_tensors="np")
            input_ids = batch["input_ids"].astype(np.int64)
            attention_mask = batch["attention_mask"].astype(np.int64)
        logits = session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask})[0]
        return np.asarray(logits[:, 1] - logits[:, 0], dtype=np.float32)

    def _batch_logits(self, batch_ids: list[list[int]]) -> NDArray[np.float32]:
        if self._session is not None:
            return self._run(self._session, batch_ids)
        batch = self.tokenizer.pad({"input_ids": batch_ids}, return_tensors="pt")
        with torch.inference_mode():
            out = self.model(**batch).logits.float()
        return np.asarray((out[:, 1] - out[:, 0]).numpy(), dtype=np.float32)

    def logits(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """fp32 (or torch-int8 when asked) logits; independent of how texts are batched."""
        if not texts:
            return np.zeros(0, dtype=np.float32)
        # Tokenize once, then batch texts of similar length: padding costs as much as real tokens.
        ids = self._ids(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros(len(ids), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            out[chunk] = self._batch_logits([ids[i] for i in chunk])
        return out

    def screen_logits(self, texts: Sequence[str]) -> np.ndarray:
        """int8 logits, one message per call (see the module docstring)."""
        if self._screen is None:
            raise RuntimeError("this model version has no model.int8.onnx to screen with")
        return np.array([self._run(self._screen, [ids])[0] for ids in self._ids(texts)], dtype=np.float32)
