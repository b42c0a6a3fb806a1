"""Configuration of the knowledge base: ``[kb]``."""

from pydantic import Field

from daemon.settings_base import Section


class KBSettings(Section):
    embedding_model: str = Field(
        "", description="local path of a sentence-transformers model; empty means the bundled MiniLM"
    )
