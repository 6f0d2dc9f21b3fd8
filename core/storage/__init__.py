"""Burrow's storage: Burr snapshots and the conversation catalog on SQLite or PostgreSQL.

Modules, one owner each:
- engine.py: connections, the read/write transaction helpers, driver errors into core.errors
- persister.py: `SQLAlchemyPersister`, Burr's persister contract and nothing else
- async_persister.py: `AsyncSQLAlchemyPersister`, the same on SQLAlchemy's asyncio engine (same code, same format)
- catalog.py: the conversations table (the persister calls `record_step`), listing, rename, delete
- codec.py: the delta encoding of a state into rows (pure, no database)
- rows.py: the statements that read and write snapshot rows
- serde.py: Burr state (de)serialization that costs O(what changed)
- frozen.py: read-only containers for stored list items
- listcache.py: list items this process has already read
- leases.py: which writer runs a turn on a branch right now (the leases table)
- feedback.py: ratings of replies (the feedback table)
- accounts.py: users who signed in and their API tokens (hashes only)
- lineage.py: where branches forked and how many messages each step holds (read from manifests)
- search.py: full-text search over messages and titles (FTS5 / tsvector), indexed by each save
- schema.py: the current tables; migrations/: Alembic revisions from every released schema to it

Code outside this package imports only the names below (tests/test_layers.py checks it).
"""
from core.storage.accounts import AccountStore, TokenInfo, UserRecord
from core.storage.async_persister import AsyncSQLAlchemyPersister
from core.storage.catalog import BranchSummary, ConversationStore, ConversationSummary, SnapshotSummary
from core.storage.feedback import Feedback, FeedbackStore
from core.storage.leases import LeaseStore
from core.storage.lineage import BranchShape, Lineage, StepLength
from core.storage.persister import SQLAlchemyPersister
from core.storage.schema import LOCAL_OWNER
from core.storage.search import MARK_END, MARK_START, SearchRow, SearchStore

__all__ = ["LOCAL_OWNER", "AccountStore", "AsyncSQLAlchemyPersister", "BranchShape", "BranchSummary", "ConversationStore", "ConversationSummary",
           "Feedback", "FeedbackStore", "LeaseStore", "Lineage", "MARK_END", "MARK_START", "SearchRow", "SearchStore", "SQLAlchemyPersister", "SnapshotSummary", "StepLength", "TokenInfo",
           "UserRecord"]
