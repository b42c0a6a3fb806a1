"""The ``draft`` stage: a reply draft for every ham message a person wrote to us.

Per message: eligibility (``daemon.drafts.eligibility``) → the query (subject + new body
text, ``daemon.kb.query``) → hybrid retrieval (``daemon.kb.search``) → composition
(``daemon.drafts.compose``) → one row in ``drafts``. A message that gets no draft gets one
row in ``draft_skips`` instead, with the rule and the reason (``mailsense drafts list --skipped``).

Exactly one draft per message: the row is upserted on ``message_id``, and the update only
applies while no person has edited the draft and it is still ``pending``/``needs_human``, so
a retry, a requeue or a crash before the outcome was recorded never adds a second draft or
overwrites a person's work. A requeued message does get a fresh draft (a newer KB).

The embedding model (and the generator backend) load on first use, from ``waiting_reason``:
until they are loaded and the knowledge base has chunks embedded by the same model,
messages wait here rather than getting drafts without sources.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from daemon.db.tables import Account, Folder, Message
from daemon.drafts.backends.base import Backend, BackendError
from daemon.drafts.compose import Composer, Composition
from daemon.drafts.eligibility import MailFacts, Rules, Skip, skip
from daemon.drafts.tables import REWRITABLE, STAGE_WRITER, WRITER_SETTING, Draft, DraftSkip
from daemon.drafts.threads import Thread, supersede_older, thread_key_for, thread_of
from daemon.errors import describe_error
from daemon.kb.query import build_query
from daemon.kb.search import SearchHit, search, search_params
from daemon.pipeline.stage import DependencyDown, Outcome

if TYPE_CHECKING:
    from daemon.config import AccountSettings, Settings
    from daemon.config.drafts import DraftSettings
    from daemon.db.session import Database
    from daemon.kb.embeddings import Embedder

log = logging.getLogger(__name__)

RECHECK_READY_SECONDS = 30.0
RECHECK_WAITING_SECONDS = 5.0


def make_backend(settings: DraftSettings, embedder: Embedder) -> Backend:
    if settings.backend == "openai":
        from daemon.drafts.backends.openai import OpenAIBackend

        return OpenAIBackend(settings.openai)
    if settings.backend == "local":
        from daemon.drafts.backends.local import LocalBackend

        backend = LocalBackend(settings.local)
        backend.load()  # a missing or broken model shows up as the stage's waiting reason
        return backend
    from daemon.drafts.backends.extractive import ExtractiveBackend

    return ExtractiveBackend(embedder, max_sentences=settings.max_sentences)


def account_rules(settings: Settings, account: AccountSettings | None) -> Rules:
    """Own addresses (global, the account's, its login when it is an address), the account's scope, max_age."""
    own = list(settings.drafts.own_addresses)
    max_age = settings.drafts.max_age_delta
    if account is None:
        return Rules.build(own, max_age=max_age)
    own += account.drafts.own_addresses
    if "@" in account.user:
        own.append(account.user)
    return Rules.build(own, account.drafts.recipients, account.drafts.folders, max_age=max_age,
                       draft_unsure=account.drafts.unsure == "draft")


class DraftStage:
    name = "draft"

    def __init__(self, settings: Settings, db: Database, embedder: Embedder | None = None) -> None:
        """``embedder`` lets a caller share an already loaded model (tests); by default ``[kb]``'s is loaded."""
        self.settings = settings
        self.db = db
        self.batch_size = settings.drafts.batch_size
        self.accounts = {a.name: a for a in settings.accounts}
        # Derived from the settings once, not per message.
        self._rules = {a.name: account_rules(settings, a) for a in settings.accounts}
        self._default_rules = account_rules(settings, None)
        self._search_params = search_params(settings.kb, settings.drafts.retrieve_chunks)
        self._lock = threading.Lock()
        self._inference = threading.Lock()  # the cores are shared: one message's models at a time
        self._embedder: Embedder | None = embedder
        self._composer: Composer | None = None
        self._problem: str | None = "not started"
        self._checked_at = -1e9
        self._names: dict[tuple[str, int], str] = {}

    # -- readiness ---------------------------------------------------------------------------

    def waiting_reason(self) -> str | None:
        period = RECHECK_WAITING_SECONDS if self._problem else RECHECK_READY_SECONDS
        if time.monotonic() - self._checked_at >= period:
            self._refresh()
        return self._problem

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() - self._checked_at < RECHECK_WAITING_SECONDS:
                return  # another worker just did it
            try:
                self._problem = self._check()
            except Exception as exc:  # a broken model path or endpoint config: say so, keep waiting
                self._problem = f"draft stage cannot start: {describe_error(exc)}"
            self._checked_at = time.monotonic()

    def _check(self) -> str | None:
        from daemon.kb.embeddings import embedder_for
        from daemon.kb.tables import KBChunk, KBEmbeddingModel

        if self._embedder is None:
            embedder = embedder_for(self.settings.kb)  # the same mapping of [kb] as `kb add`
            embedder.embed(["warm up"])  # loads the model now, not inside the first message's transaction
            self._embedder = embedder
        if self._composer is None:
            self._composer = Composer(make_backend(self.settings.drafts, self._embedder), self.settings.drafts)
            log.info("draft stage ready: backend %s, model %s", self._composer.backend.name,
                     self._composer.backend.model)
        with self.db.session() as s:
            chunks = s.scalar(select(func.count()).select_from(KBChunk).where(KBChunk.embedding.is_not(None)))
            stored = s.get(KBEmbeddingModel, 1)
        if not chunks:
            return "the knowledge base is empty: add documents with `mailsense kb add PATH`"
        if stored is None or stored.name != self._embedder.name:
            return (f"the knowledge base was embedded with {stored.name if stored else 'an unknown model'}, "
                    f"drafts use {self._embedder.name}: run `mailsense kb sync` or `kb add` to re-embed")
        return None

    # -- work ----------------------------------------------------------------------------------

    def process(self, session: Session, messages: list[Message]) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        for message in messages:
            try:
                outcomes[message.id] = self._draft(session, message)
            except Exception as exc:  # BackendError (endpoint down) and database hiccups alike: retry later
                if session.in_transaction():
                    session.rollback()
                down = self._endpoint_down() if isinstance(exc, BackendError) else None
                if down:  # no message is at fault: the stage waits, no attempt counted; finished ones are kept
                    raise DependencyDown(down, outcomes) from exc
                level = logging.WARNING if isinstance(exc, BackendError) else logging.ERROR
                log.log(level, "message %d: draft failed: %s", message.id, describe_error(exc))
                outcomes[message.id] = Outcome.retry(describe_error(exc))
        return outcomes

    def _endpoint_down(self) -> str | None:
        """Why the openai backend's endpoint cannot be reached at all, or None when it answers.

        A failed request alone does not tell an outage from a request that this message made fail
        (a prompt the server chokes on); a second, trivial request does: ``GET .../models`` with a
        short timeout. Any HTTP answer, even an error status, means the server is there and the
        failure counts against the message; a refused or timed-out connection means it is not.
        """
        if self.settings.drafts.backend != "openai":
            return None
        import httpx

        endpoint = self.settings.drafts.openai
        url = httpx.URL(endpoint.base_url)
        where = f"{url.host}:{url.port}" if url.port else url.host
        try:
            httpx.get(endpoint.base_url.rstrip("/") + "/models", timeout=min(5.0, endpoint.timeout_seconds))
        except httpx.TransportError as exc:
            return f"LLM endpoint {where} unreachable ({type(exc).__name__})"
        return None

    def _name(self, session: Session, table: type[Account] | type[Folder], row_id: int | None) -> str | None:
        if row_id is None:
            return None
        key = (table.__tablename__, row_id)
        if key not in self._names:
            name = session.execute(select(table.name).where(table.id == row_id)).scalar_one_or_none()
            if name is None:
                return None
            self._names[key] = name
        return self._names[key]

    def _draft(self, session: Session, message: Message) -> Outcome:
        composer, embedder = self._composer, self._embedder
        if composer is None or embedder is None:
            return Outcome.retry(self._problem or "draft stage not ready")
        with session.begin():
            account_name = self._name(session, Account, message.account_id)
            folder_name = self._name(session, Folder, message.folder_id)
            existing = session.execute(
                select(Draft.status, Draft.edited_by_human).where(Draft.message_id == message.id)
            ).one_or_none()
        account = self.accounts.get(account_name or "")
        if account is not None and not account.drafts.enabled:
            return self._skip(session, message, Skip("account_off", "drafts are off for this account"))
        facts = MailFacts(
            from_addr=message.from_addr or "",
            to_addrs=list(message.to_addrs or []),
            headers=message.headers or {},
            folder=folder_name,
            spam_verdict=message.spam_verdict,
            sent_at=message.sent_at,
            received_at=message.received_at,
        )
        skipped = skip(facts, self._rules.get(account_name or "", self._default_rules))
        if skipped:
            return self._skip(session, message, skipped)
        if existing is not None and (existing.edited_by_human or existing.status not in REWRITABLE):
            log.info("message %d: draft kept (%s%s)", message.id, existing.status,
                     ", edited by a person" if existing.edited_by_human else "")
            return Outcome.next()

        query = build_query(message.subject, message.body_text)
        with self._inference:
            vector = embedder.embed_query(query) if query else None
        hits: list[SearchHit] = []
        if vector is not None:
            with session.begin():
                hits = search(session, query, embedder, self._search_params, query_vector=vector)
        # A remote endpoint does its work elsewhere: only local models take the CPU lock.
        lock = contextlib.nullcontext() if composer.backend.name == "openai" else self._inference
        with lock:
            composition = composer.compose(query, hits, message.from_name)
        thread = thread_of(message.message_id, message.headers)
        with session.begin():
            written = save(session, message.id, composition, thread)
        log.info("message %d: draft %s (confidence %.2f, %d sources)%s%s", message.id, composition.status,
                 composition.confidence, len(composition.citations),
                 "" if written is not None else " not written: edited meanwhile",
                 f", supersedes draft {', '.join(map(str, written))}" if written else "")
        return Outcome.next()

    @staticmethod
    def _skip(session: Session, message: Message, why: Skip) -> Outcome:
        with session.begin():
            save_skip(session, message.id, why)
        log.info("message %d: no draft (%s)", message.id, why.reason)
        return Outcome.finish(f"no draft: {why.reason}")


def save_skip(session: Session, message_id: int, why: Skip) -> None:
    """Record (or update, on reprocessing) why the message gets no draft."""
    values = {"rule": why.rule, "reason": why.reason}
    stmt = insert(DraftSkip).values(message_id=message_id, **values)
    session.execute(
        stmt.on_conflict_do_update(index_elements=[DraftSkip.message_id], set_={**values, "updated_at": func.now()})
    )


def save(session: Session, message_id: int, c: Composition, thread: Thread | None = None) -> list[int] | None:
    """Insert the draft, or update the existing one unless a person edited it or it moved on.

    A skip recorded by an earlier pass (say, before the account's scope changed) is removed.
    Older drafts of the same conversation still awaiting review are superseded by this one.
    Returns the ids of the superseded drafts, or None when the draft was not written.
    """
    thread = thread or Thread(None, ())
    key = thread_key_for(session, message_id, thread)
    session.execute(delete(DraftSkip).where(DraftSkip.message_id == message_id))
    # Marks this transaction's writes as the machine's: the review trigger then keeps the text as
    # generated_text instead of taking it for a person's edit (daemon/review/schema.py).
    session.execute(select(func.set_config(WRITER_SETTING, STAGE_WRITER, True)))
    values = {
        "status": c.status,
        "text": c.text,
        "citations": c.citations,
        "confidence": c.confidence,
        "reason": c.reason,
        "backend": c.backend,
        "model": c.model,
        "thread_key": key,
    }
    stmt = insert(Draft).values(message_id=message_id, **values)
    upsert = stmt.on_conflict_do_update(
        index_elements=[Draft.message_id],
        set_={**values, "updated_at": func.now()},
        where=(Draft.edited_by_human.is_(False)) & Draft.status.in_(REWRITABLE),
    ).returning(Draft.id)
    draft_id = session.execute(upsert).scalar_one_or_none()
    if draft_id is None:
        return None
    return supersede_older(session, message_id, draft_id, key, thread)
