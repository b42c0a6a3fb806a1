"""Any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, a hosted API) over httpx.

Only ``POST {base_url}/chat/completions`` is used, the one call every compatible server
implements. Timeouts, connection errors, 429 and 5xx are retried here with exponential
backoff (``max_retries``); if they persist, ``BackendError`` makes the pipeline retry the
message later. The API key is read from the environment at call time and never logged.
"""

from __future__ import annotations

import logging
import os
import time

import httpx

from daemon.config.drafts import OpenAIBackendSettings
from daemon.drafts.backends.base import BackendError, DraftRequest, Generated
from daemon.drafts.prompt import build_prompt, parse_answer

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBackend:
    name = "openai"

    def __init__(self, settings: OpenAIBackendSettings, transport: httpx.BaseTransport | None = None) -> None:
        if not settings.model:
            raise ValueError("drafts.openai.model is empty: name the model the endpoint serves")
        self.settings = settings
        self._client = httpx.Client(
            base_url=settings.base_url.rstrip("/") + "/",
            timeout=settings.timeout_seconds,
            transport=transport,
        )

    @property
    def model(self) -> str:
        return self.settings.model

    def close(self) -> None:
        self._client.close()

    def _headers(self) -> dict[str, str]:
        if not self.settings.api_key_env:
            return {}
        key = os.environ.get(self.settings.api_key_env)
        if not key:
            raise BackendError(
                f"environment variable {self.settings.api_key_env} (drafts.openai.api_key_env) is not set"
            )
        return {"Authorization": f"Bearer {key}"}

    def generate(self, request: DraftRequest) -> Generated:
        prompt = build_prompt(request)
        payload = {
            "model": self.settings.model,
            "messages": prompt.messages(),
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_tokens,
        }
        return parse_answer(self._complete(payload), request)

    def _complete(self, payload: dict[str, object]) -> str:
        headers = self._headers()
        last = ""
        for attempt in range(self.settings.max_retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            try:
                response = self._client.post("chat/completions", json=payload, headers=headers)
            except httpx.HTTPError as exc:  # timeouts, refused connections, protocol errors
                last = f"{type(exc).__name__}"
                log.debug("openai backend: %s (attempt %d)", last, attempt + 1)  # the outcome is logged once
                continue
            if response.status_code in _RETRY_STATUS:
                last = f"HTTP {response.status_code}"
                log.debug("openai backend: %s (attempt %d)", last, attempt + 1)  # the outcome is logged once
                continue
            if response.status_code >= 400:
                raise BackendError(f"endpoint answered HTTP {response.status_code}")
            try:
                return str(response.json()["choices"][0]["message"]["content"] or "")
            except (ValueError, KeyError, IndexError, TypeError):
                raise BackendError("endpoint returned no chat completion") from None
        raise BackendError(f"endpoint failed after {self.settings.max_retries + 1} attempts: {last}")
