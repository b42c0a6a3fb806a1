"""The ``classify`` stage: score parsed messages in batches with the active spam model.

The model is loaded once and swapped when another version becomes active (checked every
``spam.reload_seconds``, 30 by default), so ``mailsense train spam --activate`` takes effect without a
restart. Until some version is active, messages wait here rather than being guessed at.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func
from sqlalchemy.orm import Session

from daemon.config.spam import SpamSettings
from daemon.db.session import Database
from daemon.db.tables import Message
from daemon.mail.mime import ParsedMessage
from daemon.pipeline.stage import Outcome
from daemon.spam import registry

if TYPE_CHECKING:
    from daemon.spam.model import LoadOptions, SpamModel

log = logging.getLogger(__name__)

def parsed_from_row(message: Message) -> ParsedMessage:
    """The parse stage's result, rebuilt from the stored columns (no second MIME parse)."""
    headers = message.headers or {}
    return ParsedMessage(
        message_id=message.message_id,
        subject=message.subject or "",
        from_name=message.from_name or "",
        from_addr=message.from_addr or "",
        to_addrs=list(message.to_addrs or []),
        cc_addrs=[],
        sent_at=message.sent_at,
        headers={k: list(v) for k, v in headers.items()},
        body_text=message.body_text or "",
        body_from_html=False,
    )


class ClassifyStage:
    name = "classify"

    def __init__(self, settings: SpamSettings, db: Database, model_cache_dir: Path | None = None) -> None:
        self.settings = settings
        self.model_cache_dir = model_cache_dir
        """Where versions trained on another host are extracted from the database (state_dir/models)."""
        self.db = db
        self.batch_size = settings.batch_size
        self._lock = threading.Lock()
        self._inference = threading.Lock()
        self._model: SpamModel | None = None
        self._version_id: int | None = None
        self._checked_at = 0.0
        self._problem: str | None = None

    def waiting_reason(self) -> str | None:
        self._refresh()
        return self._problem

    def _refresh(self) -> None:
        if time.monotonic() - self._checked_at < self.settings.reload_seconds and (self._model or self._problem):
            return
        with self._lock:
            self._checked_at = time.monotonic()
            options: LoadOptions = {"quantize": self.settings.int8, "threads": self.settings.threads or None,
                                    "runtime": self.settings.runtime}
            try:
                if self.settings.model_dir:
                    if self._model is None:
                        with self.db.session() as session:
                            loaded = registry.load_configured(session, self.settings.model_dir,
                                                              self.model_cache_dir, **options)
                        assert loaded is not None
                        self._version_id, self._model = loaded
                        log.info("spam model loaded from %s (%s)", self.settings.model_dir,
                                 self._model.transformer.path_name)
                    self._problem = None
                    return
                with self.db.session() as session:
                    row = registry.active_version(session)
                    if row is None:
                        self._problem = ("no active spam model: run `mailsense setup` (starter model) or "
                                         "`mailsense train spam --activate`")
                        return
                    if row.id != self._version_id:
                        loaded = registry.load_active(session, self.model_cache_dir, **options)
                        if loaded is not None:
                            self._version_id, self._model = loaded
                            log.info("spam model version %d loaded (%s)", self._version_id,
                                     self._model.transformer.path_name)
                self._problem = None
            except Exception as exc:  # a missing or broken model directory: say so, keep waiting
                self._problem = f"spam model cannot be loaded: {type(exc).__name__}: {str(exc)[:200]}"

    def process(self, session: Session, messages: list[Message]) -> dict[int, Outcome]:
        model, version_id = self._model, self._version_id
        if model is None:
            return {m.id: Outcome.retry(self._problem or "no spam model") for m in messages}
        with self._inference:  # the cores are shared: one batch at a time is fastest
            verdicts = model.classify([parsed_from_row(m) for m in messages], batch_size=self.batch_size)
        with session.begin():
            for message, verdict in zip(messages, verdicts, strict=True):
                message.spam_verdict = verdict.verdict
                message.spam_score = verdict.score
                message.spam_model_version_id = version_id
                message.classified_at = func.now()
                session.add(message)
        return {m.id: Outcome.next() for m in messages}
