"""Fixtures for the persistence tests: ready persisters on the parametrized database (SQLite, PostgreSQL)."""
from __future__ import annotations

import pytest

from core.storage import SQLAlchemyPersister


@pytest.fixture
def make_persister(db_url):
    """Makes initialized persisters on the test's database; each is another process's view (own caches)."""
    made: list[SQLAlchemyPersister] = []

    def make(**options) -> SQLAlchemyPersister:
        store = SQLAlchemyPersister.from_url(db_url, **options)
        store.initialize()
        made.append(store)
        return store

    yield make
    for store in made:
        store.engine.dispose()


@pytest.fixture
def persister(make_persister) -> SQLAlchemyPersister:
    return make_persister()
