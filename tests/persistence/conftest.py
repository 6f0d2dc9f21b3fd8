"""Fixtures for the persistence tests: a ready persister on the parametrized database (SQLite, PostgreSQL)."""
from __future__ import annotations

import pytest

from core.persistence import SQLAlchemyPersister


@pytest.fixture
def persister(db_url):
    store = SQLAlchemyPersister.from_url(db_url)
    store.initialize()
    yield store
    store.engine.dispose()
