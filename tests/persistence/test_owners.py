"""Owners, users and API tokens (schema 0007) on SQLite and PostgreSQL: the migration from a database at
0006, the owner a first save records, listing by owner on an index, hand-over, and tokens kept as hashes."""
from __future__ import annotations

import pytest
from alembic import command
from burr.core import State
from sqlalchemy import inspect, text

from core.errors import InputError
from core.storage import LOCAL_OWNER, AccountStore, ConversationStore, SQLAlchemyPersister
from core.storage.accounts import token_hash
from core.storage.engine import create_burrow_engine
from core.storage.migrations import HEAD, alembic_config, upgrade
from tests.persistence.test_migrations import revision_of, schema_differences


@pytest.fixture
def engine(db_url: str):
    engine = create_burrow_engine(db_url)
    yield engine
    engine.dispose()


def save_chat(persister: SQLAlchemyPersister, key: str, sequence_id: int = 0) -> None:
    state = State({"chat_history": [{"role": "user", "content": f"chat {key}"}], "__SEQUENCE_ID": sequence_id})
    persister.save(key, f"app-{key}", sequence_id, "human_input", state, "completed")


def test_a_database_at_0006_gives_its_conversations_to_the_local_user(engine):
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "0006")
    with engine.begin() as conn:  # a conversation as a 0006 release saved it (no owner column yet)
        conn.execute(text("INSERT INTO burrow_conversations (partition_key, title, title_custom, created_at, "
                          "updated_at, activity, message_count, latest_app_id, stored_bytes) VALUES "
                          "('old', 'Old chat', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 7, 2, 'a', 10)"))
    assert "0007" in upgrade(engine) and revision_of(engine) == [HEAD]
    assert schema_differences(engine) == []
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("burrow_conversations")}
    assert indexes["ix_burrow_conversations_owner_listing"] == ["owner", "pinned", "activity"]
    store = ConversationStore(SQLAlchemyPersister(engine))
    assert [(c.partition_key, c.owner) for c in store.list(owner=LOCAL_OWNER)] == [("old", LOCAL_OWNER)]
    with engine.begin() as conn:  # a 0006 release's insert (it names no owner) still works at 0007
        conn.execute(text("INSERT INTO burrow_conversations (partition_key, title, title_custom, created_at, "
                          "updated_at, activity, message_count, latest_app_id, stored_bytes) VALUES "
                          "('older', 'By 0006', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 3, 1, 'b', 1)"))
    assert store.get("older").owner == LOCAL_OWNER


@pytest.mark.parametrize("fast", [True, False], ids=["fast-save", "general-save"])
def test_the_first_save_records_the_claimed_owner_and_later_claims_change_nothing(make_persister, fast):
    persister = make_persister()
    persister.fast_saves = fast
    persister.claim("mine", "oidc:alice")
    save_chat(persister, "mine")
    save_chat(persister, "unclaimed")
    persister.claim("mine", "oidc:mallory")  # a claim on an existing conversation does not take it over
    save_chat(persister, "mine", 1)
    store = ConversationStore(persister)
    assert store.get("mine").owner == "oidc:alice" and store.get("unclaimed").owner == LOCAL_OWNER
    assert [c.partition_key for c in store.list(owner="oidc:alice")] == ["mine"]
    assert store.count(owner="oidc:alice") == 1 and store.count() == 2
    assert [c.partition_key for c in store.list(owner="oidc:mallory")] == []


def test_hand_over_moves_one_owners_conversations_and_no_one_elses(persister):
    for key, owner in (("a", LOCAL_OWNER), ("b", LOCAL_OWNER), ("c", "oidc:carol")):
        persister.claim(key, owner)
        save_chat(persister, key)
    store = ConversationStore(persister)
    assert store.hand_over(LOCAL_OWNER, "oidc:alice") == 2
    assert {c.partition_key: c.owner for c in store.list()} == {"a": "oidc:alice", "b": "oidc:alice",
                                                                 "c": "oidc:carol"}
    assert store.hand_over("oidc:alice", "oidc:bob", "a") == 1 and store.get("a").owner == "oidc:bob"


def test_a_user_listing_reads_only_the_owner_index(engine):
    upgrade(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT partition_key FROM burrow_conversations WHERE owner = 'x' "
                "AND (pinned, activity) < (1, 5) ORDER BY pinned DESC, activity DESC LIMIT 20")))
            assert "ix_burrow_conversations_owner_listing" in plan and "TEMP B-TREE" not in plan, plan
        else:
            conn.execute(text("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"))
            plan = " ".join(r[0] for r in conn.execute(text(
                "EXPLAIN SELECT partition_key FROM burrow_conversations WHERE owner = 'x' AND "
                "(pinned, activity) < (true, 5) ORDER BY pinned DESC, activity DESC LIMIT 20")))
            assert "ix_burrow_conversations_owner_listing" in plan and "Sort" not in plan, plan


def test_tokens_are_stored_as_hashes_checked_and_revoked_by_their_owner_only(persister, engine):
    accounts = AccountStore(persister.database)
    token, info = accounts.create_token("oidc:alice", "  laptop\x00 script ")
    assert token.startswith("burrow_") and len(token) > 40 and info.name == "laptop script"
    assert accounts.owner_of_token(token) == "oidc:alice"
    assert accounts.tokens("oidc:alice")[0].last_used_at is not None
    assert accounts.owner_of_token(token + "x") is None and accounts.owner_of_token("") is None
    with persister.engine.connect() as conn:
        stored = [tuple(row) for row in conn.execute(text("SELECT * FROM burrow_api_tokens"))]
    assert token not in repr(stored) and token_hash(token) in repr(stored)
    assert accounts.revoke("oidc:mallory", info.id) is False and accounts.owner_of_token(token) == "oidc:alice"
    assert accounts.revoke("oidc:alice", info.id) is True and accounts.owner_of_token(token) is None
    with pytest.raises(InputError, match="name"):
        accounts.create_token("oidc:alice", " ")


def test_users_are_remembered_and_found_by_subject_or_email(persister):
    accounts = AccountStore(persister.database)
    accounts.remember("oidc:1", "Alice@Example.com", "Alice")
    accounts.remember("oidc:1", "alice@example.com", "Alice A.")  # the provider's newer profile wins
    accounts.remember("oidc:2", "bob@example.com", None)
    assert [(u.subject, u.name) for u in accounts.find("ALICE@example.com")] == [("oidc:1", "Alice A.")]
    assert [u.subject for u in accounts.find("oidc:2")] == ["oidc:2"]
    assert accounts.find("nobody@example.com") == [] and accounts.user("oidc:3") is None
    assert set(accounts.users({"oidc:1", "oidc:2", "oidc:9"})) == {"oidc:1", "oidc:2"}
