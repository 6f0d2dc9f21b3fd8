"""Users in the facade (core/access.py): another user's conversation is exactly an unknown one, admins
read but never change, per-user limits, and every method that takes a conversation id is checked."""
from __future__ import annotations

import inspect
import re
import time

import pytest
from sqlalchemy import event

from core.access import SCOPED
from core.chat import ChatService
from core.errors import BurrowError, InputError, LimitError, ReadOnlyError
from core.llm import OfflineModel
from core.retention import prune
from core.settings import Settings
from core.users import LOCAL_USER, User

ALICE = User("oidc:https://id.example|alice", "alice@example.com", "Alice")
BOB = User("oidc:https://id.example|bob", "bob@example.com", "Bob")
ADMIN = User("oidc:https://id.example|root", "root@example.com", "Root", admin=True)
# Facade methods that take a conversation id but are the run worker's own (core/turn.py calls them for
# a run the service already admitted), not something a page or route may call for a user.
WORKER_ONLY = {"application", "latest_branch", "forget_cache", "note_failure"}
CHECKS = {"may", "owns", "read_only", "minted"}
# calls_of() names whose facade method is spelled differently
READ_METHOD = {"feedback": "feedback_of_conversation", "export": "export_text", "rate": "set_feedback"}  # the checks themselves (core/access.py)


@pytest.fixture
def make_service(db_url):
    made: list[ChatService] = []

    def make(**fields) -> ChatService:
        settings = Settings(**{"database_url": db_url, "tracker_project": None, "auth": "oidc", **fields})
        made.append(ChatService.from_settings(settings, model=OfflineModel(word_delay=0)))
        return made[-1]

    yield make
    for service in made:
        service.close()


def chat(service: ChatService, text: str = "hello") -> str:
    key = service.new_conversation_id()
    run = service.send(key, text)
    assert "".join(run) and run.outcome == "answered"
    return key


def test_every_facade_method_that_takes_a_conversation_id_checks_who_asks():
    unchecked = [name for name, member in inspect.getmembers(ChatService, inspect.isfunction)
                 if not name.startswith("_") and name not in WORKER_ONLY | CHECKS
                 and list(inspect.signature(member).parameters)[1:2] == ["partition_key"]
                 and not hasattr(member, SCOPED)]
    assert unchecked == []


def outcome(call) -> object:
    """What a call gives: its result, or its error's type and message (with ids written as ID)."""
    try:
        result = call()
    except (BurrowError, InputError) as exc:
        return type(exc).__name__, re.sub(r"[0-9a-f]{32}", "ID", str(exc))
    return getattr(result, "messages", result) if not isinstance(result, (list, bool, int, type(None))) else result


def calls_of(bob: ChatService, branch: str) -> dict:
    """Every facade call that takes a conversation id, made by Bob (k: the id he tries)."""
    return {
        "open": lambda k: bob.open(k).messages, "conversation": lambda k: bob.conversation(k),
        "rename": lambda k: bob.rename(k, "mine now"), "delete": lambda k: bob.delete(k),
        "pin": lambda k: bob.pin(k, True), "branches": lambda k: bob.branches(k),
        "branch_ids": lambda k: bob.branch_ids(k), "snapshots": lambda k: bob.snapshots(k, branch),
        "snapshot_count": lambda k: bob.snapshot_count(k, branch), "snapshot": lambda k: bob.snapshot(k, branch, 0),
        "fork": lambda k: bob.fork(k, branch, 0), "tree": lambda k: bob.tree(k).shapes,
        "tree_outline": lambda k: bob.tree_outline(k), "edit": lambda k: bob.edit(k, branch, 0, "changed"),
        "regenerate": lambda k: bob.regenerate(k, branch, 1), "feedback": lambda k: bob.feedback_of_conversation(k),
        "rate": lambda k: bob.set_feedback(k, branch, 1, True), "export": lambda k: bob.export_text(k, "markdown"),
        "active_runs": lambda k: bob.active_runs(k), "stop_elsewhere": lambda k: bob.stop_elsewhere(k),
        "retry": lambda k: bob.retry(k, branch),
    }


def test_another_users_conversation_is_exactly_an_unknown_one(make_service):
    service = make_service()
    alice, bob = service.as_user(ALICE), service.as_user(BOB)
    key = chat(alice)
    branch = alice.open(key).app_id
    unknown = service.new_conversation_id()
    for name, call in calls_of(bob, branch).items():
        theirs = outcome(lambda: call(key))
        assert theirs == outcome(lambda: call(unknown)) or name == "retry", name
    assert outcome(lambda: bob.retry(key, branch)) == ("InputError", "No conversation 'ID'.")
    assert bob.conversations() == [] and bob.count_conversations() == 0 and bob.replying([key]) == set()
    with pytest.raises(InputError, match="No conversation"):
        bob.send(key, "let me in")
    assert [c.partition_key for c in alice.conversations()] == [key] and len(alice.open(key).messages) == 2
    assert alice.conversation(key).title == "hello" and alice.conversation(key).owner == ALICE.subject


def test_a_run_is_followed_and_stopped_by_its_own_user_only(make_service):
    service = make_service()
    alice, bob = service.as_user(ALICE), service.as_user(BOB)
    run = alice.send(service.new_conversation_id(), "long enough to stop " * 20)
    assert bob.run(run.id) is None and bob.attach(run.id) is None and bob.stop(run.id) is False
    assert alice.run(run.id) is run and alice.attach(run.id) is run
    "".join(run)


def test_an_admin_reads_everyones_conversations_and_changes_none(make_service):
    service = make_service()
    alice, admin = service.as_user(ALICE), service.as_user(ADMIN)
    key = chat(alice, "a question")
    assert admin.conversations() == []  # their own list: nothing
    [listed] = admin.conversations(everyone=True)
    assert listed.partition_key == key and listed.owner == ALICE.subject and admin.count_conversations(everyone=True) == 1
    assert [m["content"] for m in admin.open(key).messages][0] == "a question"
    assert "a question" in admin.export_text(key, "markdown") and admin.snapshot_count(key, listed.latest_app_id) > 0
    assert admin.read_only(key) and not alice.read_only(key)
    for change in (lambda: admin.delete(key), lambda: admin.pin(key, True), lambda: admin.send(key, "a word"),
                   lambda: admin.rename(key, "root's"), lambda: admin.fork(key, listed.latest_app_id, 0)):
        with pytest.raises(ReadOnlyError, match="can read it, not change it"):
            change()
    assert service.as_user(BOB).conversations(everyone=True) == []  # not an admin: everyone= changes nothing
    assert alice.conversation(key) is not None and not alice.conversation(key).pinned


def test_retention_prunes_everyones_conversations(make_service):
    service = make_service(retention_days=0.00001)
    keys = [chat(service.as_user(user)) for user in (ALICE, BOB, LOCAL_USER)]
    time.sleep(1.2)  # older than the cutoff (under a second)
    assert {c.partition_key for c in prune(service)} == set(keys)
    assert all(service.as_user(u).conversations() == [] for u in (ALICE, BOB, LOCAL_USER))


def test_messages_per_minute_are_limited_per_user_and_others_are_unaffected(make_service):
    service = make_service(user_messages_per_minute=2)
    alice, bob = service.as_user(ALICE), service.as_user(BOB)
    key = chat(alice, "one")
    assert "".join(alice.send(key, "two"))
    with pytest.raises(LimitError, match="last minute") as raised:
        alice.send(key, "three")
    assert 1 <= raised.value.retry_after <= 60
    assert len(alice.open(key).messages) == 4  # nothing of "three" was stored
    chat(bob, "bob is fine")


def test_replies_at_once_are_limited_per_user(make_service):
    service = make_service(user_max_runs=1)
    slow = ChatService.from_settings(service.settings, model=OfflineModel(word_delay=0.05))
    try:
        alice, bob = slow.as_user(ALICE), slow.as_user(BOB)
        first = alice.send(slow.new_conversation_id(), "a long one " * 10)
        with pytest.raises(LimitError, match="at once"):
            alice.send(slow.new_conversation_id(), "another")
        other = bob.send(slow.new_conversation_id(), "bob's")
        assert "".join(other) and "".join(first) and first.outcome == "answered"
        assert "".join(alice.send(slow.new_conversation_id(), "now it can"))
    finally:
        slow.close()


def test_without_sign_in_there_are_no_per_user_limits(make_service):
    service = make_service(auth="none", user_messages_per_minute=1)
    key = chat(service)
    assert "".join(service.send(key, "again")) and service.conversation(key).owner == LOCAL_USER.subject


def statements(service: ChatService, call) -> list[str]:
    """The SQL a call runs, with ids and numbers written alike (the work, not its arguments)."""
    seen: list[str] = []
    engine = service._persister.database.engine

    def record(conn, cursor, statement, parameters, context, many) -> None:
        seen.append(re.sub(r"\b\d+\b", "N", statement))

    event.listen(engine, "before_cursor_execute", record)
    try:
        outcome(call)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_reading_another_users_id_runs_the_same_queries_as_an_unknown_one(make_service):
    """The same timing class: refusing someone else's conversation does the reads an unknown id does
    (the same statements, the same tables), so a stopwatch cannot tell the two apart either."""
    service = make_service()
    alice, bob = service.as_user(ALICE), service.as_user(BOB)
    key = chat(alice)
    branch = alice.open(key).app_id
    unknown = service.new_conversation_id()
    reads = {name: call for name, call in calls_of(bob, branch).items()
             if getattr(getattr(ChatService, READ_METHOD.get(name, name), None), SCOPED, True) is False}
    assert len(reads) >= 10, sorted(reads)
    beyond_the_owner = 0
    for name, call in reads.items():
        theirs, never = statements(service, lambda: call(key)), statements(service, lambda: call(unknown))
        assert theirs == never, (name, theirs, never)
        beyond_the_owner += len(never) > 1
    assert beyond_the_owner >= 8  # most reads do more than look the owner up: the decoy did them too


def test_search_finds_what_the_listing_shows(make_service):
    signed_in = make_service()
    alices = chat(signed_in.as_user(ALICE), "walruses at dawn")
    bobs = chat(signed_in.as_user(BOB), "walruses at dusk")
    assert [h.conversation_id for h in signed_in.as_user(ALICE).search("walrus")] == [alices]
    assert signed_in.as_user(ADMIN).search("walrus") == []  # an admin's own search: their own
    assert {h.conversation_id for h in signed_in.as_user(ADMIN).search("walrus", everyone=True)} == {alices, bobs}
    assert [h.conversation_id for h in signed_in.as_user(BOB).search("walrus", everyone=True)] == [bobs]
    alone = make_service(auth="none")  # one person's database: all of it listed, all of it found
    assert {c.partition_key for c in alone.conversations()} == {alices, bobs}
    assert {h.conversation_id for h in alone.search("walrus")} == {alices, bobs}
