"""Real PostgreSQL + pgvector: add, sync, remove, model change and the hybrid query."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from daemon.db.session import Database
from daemon.kb.embeddings import Embedder
from daemon.kb.search import SearchParams, fts_terms, search
from daemon.kb.store import KnowledgeBase
from daemon.kb.tables import KBChunk, KBDocument, KBEmbeddingModel

DOCS = {
    "wifi.md": "# Wi-Fi problems\n\nIf the Wi-Fi keeps disconnecting, restart the router and forget the network.\n\n"
    "## Static IP\n\nOpen Settings > Network and enter the address manually.\n",
    "battery.md": "# Battery life\n\nLower the screen brightness and turn off Bluetooth when unused.\n",
    "refunds.txt": "Refund policy\n\nRefunds are paid within 14 days to the original payment method.\n",
    "internal/escalation.md": "# Escalation\n\nFor outages page the on-call engineer at extension 4711.\n",
}


def write_kb(root: Path, docs: dict[str, str] = DOCS) -> Path:
    for name, content in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def count(db: Database, model: type) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_add_is_idempotent_and_reembeds_changes(kb_db: Database, embedder: Embedder, tmp_path: Path):
    root = write_kb(tmp_path)
    kb = KnowledgeBase(kb_db, embedder)
    report = kb.add([root])
    assert (report.added, report.updated, report.unchanged, report.errors) == (4, 0, 0, [])
    chunks = count(kb_db, KBChunk)
    assert chunks == 5

    again = kb.add([root])
    assert (again.added, again.updated, again.unchanged, again.chunks) == (0, 0, 4, 0)

    (root / "battery.md").write_text("# Battery life\n\nUse power saving mode.\n")
    changed = kb.add([root])
    assert (changed.updated, changed.unchanged, changed.chunks) == (1, 3, 1)
    assert count(kb_db, KBChunk) == chunks

    docs = {Path(d.source).name: d for d in kb.list_documents()}
    assert docs["escalation.md"].audience == "internal"
    assert docs["wifi.md"].chunks == 2 and docs["wifi.md"].title == "Wi-Fi problems"
    with kb_db.session() as s:
        model = s.get(KBEmbeddingModel, 1)
        assert (model.name, model.dimension) == (embedder.name, 384)


def test_internal_stays_internal_until_a_person_says_otherwise(kb_db: Database, embedder: Embedder, tmp_path: Path):
    notes = write_kb(tmp_path / "notes", {"runbook.md": "# Runbook\n\nThe admin password rotates on Mondays.\n"})
    kb = KnowledgeBase(kb_db, embedder)
    kb.add([notes], force_audience="internal")

    def audience() -> str:
        (doc,) = kb.list_documents()
        return doc.audience

    synced = kb.sync(notes)  # no --internal this time
    assert (synced.updated, synced.unchanged) == (0, 1)
    assert audience() == "internal"
    (notes / "runbook.md").write_text("# Runbook\n\nThe admin password rotates on Tuesdays.\n")
    assert kb.sync(notes).updated == 1
    assert audience() == "internal"  # an edit is not a decision about the audience

    (notes / "runbook.md").write_text("---\naudience: public\n---\n# Runbook\n\nAsk the admin.\n")
    kb.sync(notes)
    assert audience() == "public"  # the front matter is a person's statement
    kb.add([notes], force_audience="internal")
    (notes / "runbook.md").write_text("# Runbook\n\nAsk the admin.\n")
    kb.add([notes], force_audience="public")  # `kb add --public`
    assert audience() == "public"


def test_sync_drops_deleted_and_keeps_unreadable(kb_db: Database, embedder: Embedder, tmp_path: Path):
    root = write_kb(tmp_path / "kb")
    other = write_kb(tmp_path / "other", {"other.md": "# Other\n\nNot in the synced folder.\n"})
    kb = KnowledgeBase(kb_db, embedder)
    kb.add([root, other])
    (root / "refunds.txt").unlink()
    (root / "new.md").write_text("# Shipping\n\nParcels ship within two days.\n")
    (root / "broken.jsonl").write_text("not json\n")
    report = kb.sync(root)
    assert (report.added, report.removed, report.unchanged) == (1, 1, 3)
    assert len(report.errors) == 1 and "broken.jsonl" in report.errors[0]
    names = {Path(d.source).name for d in kb.list_documents()}
    assert names == {"wifi.md", "battery.md", "escalation.md", "new.md", "other.md"}


def test_sync_jsonl_entries(kb_db: Database, embedder: Embedder, tmp_path: Path):
    f = tmp_path / "kb.jsonl"
    entries = [{"id": f"e{i}", "title": f"Entry {i}", "text": f"Answer number {i}."} for i in range(3)]
    f.write_text("\n".join(map(json.dumps, entries)))
    kb = KnowledgeBase(kb_db, embedder)
    assert kb.sync(tmp_path).added == 3
    entries[1]["text"] = "A changed answer."
    f.write_text("\n".join(map(json.dumps, entries[:2])))
    report = kb.sync(tmp_path)
    assert (report.updated, report.removed, report.unchanged) == (1, 1, 1)


def test_remove_by_id_and_by_source(kb_db: Database, embedder: Embedder, tmp_path: Path):
    root = write_kb(tmp_path)
    kb = KnowledgeBase(kb_db, embedder)
    kb.add([root])
    by_name = {Path(d.source).name: d for d in kb.list_documents()}
    assert kb.remove(str(by_name["wifi.md"].id)) == 1
    assert kb.remove(str(root / "battery.md")) == 1
    assert kb.remove("999999") == 0
    assert count(kb_db, KBDocument) == 2
    assert count(kb_db, KBChunk) == 2  # chunks go with their document (ON DELETE CASCADE)


def test_hybrid_search_finds_the_right_document(kb_db: Database, embedder: Embedder, tmp_path: Path):
    KnowledgeBase(kb_db, embedder).add([write_kb(tmp_path)])
    with kb_db.session() as s, s.begin():
        for mode in ("hybrid", "vector", "fts"):
            hits = search(s, "my wifi keeps disconnecting", embedder, SearchParams(mode=mode, limit=3))
            assert hits and hits[0].title == "Wi-Fi problems", mode
        hits = search(s, "How long until I get my money back?", embedder, SearchParams(limit=2))
        assert hits[0].title == "Refund policy"
        assert hits[0].audience == "public" and hits[0].vector_rank == 1
        ef = s.scalar(text("SHOW hnsw.ef_search"))
        assert int(ef) >= 40  # set for this transaction only
        internal = search(s, "outage on-call extension", embedder, SearchParams(limit=1))
        assert internal[0].audience == "internal"
        assert search(s, "   ", embedder, SearchParams(mode="fts")) == []


def test_every_candidate_is_scored_on_both_legs_and_each_mode_ranks_by_its_own(
    kb_db: Database, embedder: Embedder, tmp_path: Path
):
    KnowledgeBase(kb_db, embedder).add([write_kb(tmp_path)])
    query = "restart the router"
    with kb_db.session() as s, s.begin():
        hybrid = search(s, query, embedder, SearchParams(limit=10, candidates=5))
        vector = search(s, query, embedder, SearchParams(mode="vector", limit=10, candidates=5))
        fts = search(s, query, embedder, SearchParams(mode="fts", limit=10, candidates=5))
    # Hybrid: a cosine for every hit, and BM25 for every hit that has a query term, whichever leg found it.
    assert all(h.similarity is not None for h in hybrid)
    assert {h.chunk_id for h in hybrid if h.fts_score is not None} == {h.chunk_id for h in fts}
    assert hybrid[0].title == "Wi-Fi problems" and hybrid[0].fts_rank == 1
    # One leg alone: ordered by its own score, with no trace of the other leg.
    assert [h.similarity for h in vector] == sorted((h.similarity for h in vector), reverse=True)
    assert all(h.fts_score is None and h.fts_rank is None for h in vector)
    assert [h.fts_score for h in fts] == sorted((h.fts_score for h in fts), reverse=True)
    assert all(h.similarity is None and h.vector_rank is None for h in fts)
    # The previous fusion and RRF run through the same SQL.
    with kb_db.session() as s, s.begin():
        for fusion in ("minmax", "rrf"):
            hits = search(s, query, embedder, SearchParams(limit=3, fusion=fusion, vector_weight=0.6))
            assert hits[0].title == "Wi-Fi problems", fusion


def test_fts_terms_are_plain_words():
    assert fts_terms('-foo "bar" OR baz & bar!') == "foo bar or baz"


def test_model_change_reembeds(kb_db: Database, embedder: Embedder, tmp_path: Path):
    KnowledgeBase(kb_db, embedder).add([write_kb(tmp_path)])
    other = dataclasses.replace(embedder, name="another-model")  # same weights, another recorded name
    assert KnowledgeBase(kb_db, other).ensure_model() == 5
    with kb_db.session() as s:
        assert s.get(KBEmbeddingModel, 1).name == "another-model"
    assert KnowledgeBase(kb_db, other).ensure_model() == 0


class _SmallEmbedder(Embedder):
    """A 3-dimensional stand-in: checks the column retyping path without a second checkpoint."""

    @property
    def dimension(self) -> int:
        return 3

    def embed(self, texts, progress=False):  # type: ignore[no-untyped-def]
        import numpy as np

        return np.tile(np.array([0.6, 0.8, 0.0], dtype=np.float32), (len(texts), 1))


def test_dimension_change_retypes_the_column(kb_db: Database, embedder: Embedder, tmp_path: Path):
    KnowledgeBase(kb_db, embedder).add([write_kb(tmp_path)])
    small = _SmallEmbedder(path=embedder.path, name="tiny", backend="onnx")
    KnowledgeBase(kb_db, small).ensure_model()
    with kb_db.session() as s, s.begin():
        assert s.scalar(text("SELECT vector_dims(embedding) FROM kb_chunks LIMIT 1")) == 3
        assert s.scalar(text("SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_kb_chunks_embedding'")) == 1
        hits = search(s, "wifi", small, SearchParams(limit=1))
    assert hits


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_query_returns_nothing(kb_db: Database, embedder: Embedder, bad: str):
    with kb_db.session() as s, s.begin():
        assert search(s, bad, embedder, SearchParams(mode="fts")) == []


def test_migration_and_model_define_the_same_tsvector():
    import importlib.util

    from daemon.db.migrate import MIGRATIONS_DIR
    from daemon.kb.tables import TSV_EXPRESSION

    spec = importlib.util.spec_from_file_location("m0003", MIGRATIONS_DIR / "versions" / "0003_kb.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    assert " ".join(module.TSV.split()) == " ".join(TSV_EXPRESSION.split())
