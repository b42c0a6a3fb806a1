"""The first run shows review: ``mailsense run --demo`` with no mailbox configured.

Besides the 40 public sample messages it imports a few customer questions about Glowbeam, a
made-up smart lamp (``daemon/data/demo-questions.mbox``), loads a small knowledge base about it
(``daemon/data/demo-kb/``) when the knowledge base is empty, and turns drafting on, so the
newcomer finds drafts in the review queue a minute later. The questions and pages were written
for this demo and ship under the licence of Mailsense.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from sqlalchemy import func, select

from daemon.config import Settings
from daemon.db.session import Database
from daemon.ingest.importer import demo_mbox, import_paths
from daemon.kb.chunking import ChunkParams
from daemon.kb.embeddings import embedder_for
from daemon.kb.store import KnowledgeBase
from daemon.kb.tables import KBDocument

log = logging.getLogger(__name__)

DEMO_ACCOUNT = "demo"
SUPPORT_ADDRESS = "support@glowbeam.example"


def demo_questions() -> Path:
    return Path(str(resources.files("daemon") / "data" / "demo-questions.mbox"))


def demo_kb() -> Path:
    return Path(str(resources.files("daemon") / "data" / "demo-kb"))


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with drafting on, answering as the demo's support address."""
    own = [*settings.drafts.own_addresses, SUPPORT_ADDRESS]
    drafts = settings.drafts.model_copy(update={"enabled": True, "own_addresses": own})
    return settings.model_copy(update={"drafts": drafts})


def prepare_demo(settings: Settings, db: Database) -> Settings:
    """Import the demo mail, load the demo knowledge base if there is none; the settings to run with."""
    counts = import_paths(db, DEMO_ACCOUNT, [demo_mbox(), demo_questions()])
    with db.session() as s:
        documents = s.execute(select(func.count()).select_from(KBDocument)).scalar_one()
    if documents == 0:
        params = ChunkParams(max_chars=settings.kb.chunk_max_chars, overlap_chars=settings.kb.chunk_overlap_chars)
        KnowledgeBase(db, embedder_for(settings.kb), params, settings.kb.internal_paths).add([demo_kb()])
        kb_note = "loaded the demo knowledge base (a made-up smart lamp)"
    else:
        kb_note = f"kept your knowledge base ({documents} documents)"
    log.info("demo: imported the bundled messages and customer questions (%s); %s; drafting is on",
             ", ".join(f"{k} {v}" for k, v in counts.items()), kb_note)
    log.info("demo: drafts appear in a minute; review them in another terminal with "
             "`mailsense drafts list` and `mailsense drafts show ID`, or in SQL: SELECT * FROM review_queue")
    return demo_settings(settings)
