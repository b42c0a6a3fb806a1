"""CPU inference helpers shared by the spam model and the knowledge-base embedder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def available_cores() -> int:
    """All cores we may use (respects CPU affinity, e.g. under systemd's CPUAffinity=)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def onnx_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads; only errors are logged."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
