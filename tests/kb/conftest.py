"""Fixtures for KB tests: the embedding model once per session; databases come from tests/conftest.py."""

from __future__ import annotations

import pytest

from daemon.db.session import Database


@pytest.fixture
def kb_db(db: Database) -> Database:
    """A fresh, migrated database (the suite's ``db`` fixture), named for what these tests use it for."""
    return db


