"""Fixtures for the core tests: a real persister on the test's own SQLite file."""
from __future__ import annotations

import pytest

from core.storage import SQLAlchemyPersister


@pytest.fixture
def persister(sqlite_url):
    store = SQLAlchemyPersister.from_url(sqlite_url)
    store.initialize()
    yield store
    store.engine.dispose()
