"""Bad input at the core level, on SQLite and PostgreSQL: each kind gets one clear behaviour.

Refused (InputError, nothing stored): blank messages, messages over the limit, malformed conversation
ids. Cleaned: control characters (NUL included, which PostgreSQL cannot store) and broken Unicode.
Kept exactly: emoji, right-to-left text, HTML, <script>, markdown tricks and SQL-looking text
(showing them as text, never as markup, is the UI's job; storing them faithfully is ours).
"""
from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect

from core.facts import without_facts
from core.chat import ChatService, InputError, clean_message
from core.text import is_valid_conversation_id
from core.text import TITLE_CHARS

EMOJI_RTL = ("Family 👨\u200d👩\u200d👧\u200d👦, skin tones 👋🏽, flags 🇩🇪🇯🇵, math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 — "
             "مرحبا بالعالم — שלום עולם — mixed ‮desrever‬ and ‏RLM‎ marks, e\u0301 combining")
# Bidirectional overrides are removed (they reorder what follows); RLM/LRM marks and joiners stay.
EMOJI_RTL_STORED = EMOJI_RTL.replace("\u202e", "").replace("\u202c", "")
MARKUP = [
    "<script>alert('xss')</script>",
    '<img src=x onerror="alert(1)"> and <iframe src="javascript:alert(2)"></iframe>',
    "![tracking pixel](http://127.0.0.1:9/pixel.png) [click me](javascript:alert(3))",
    "[innocent](https://example.com \"title\") <a href='data:text/html,<script>x</script>'>x</a>",
    "<!-- hidden --> &lt;escaped&gt; &amp; ``` code ``` <style>body{display:none}</style>",
]
SQL = [
    "'); DROP TABLE burrow_snapshots; --",
    "Robert'); DELETE FROM burrow_conversations WHERE ('1'='1",
    "\" OR 1=1; -- and %_ wildcards \\ backslash",
]


@pytest.fixture
def service(make_service) -> ChatService:
    return make_service()


def send(service: ChatService, pk: str, text: str) -> str:
    turn = service.send(pk, text)
    reply = "".join(turn)
    assert turn.outcome == "answered", turn.error
    return reply


def reopened(service: ChatService, db_url: str, build_service) -> ChatService:
    """A second service with its own engine: what another process reads back from the database."""
    return build_service(db_url)


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


# ---- refused ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "   ", "\n\t \r\n", "\x00\x00\x07", None], ids=repr)
def test_blank_messages_are_refused_and_nothing_is_stored(service, text):
    with pytest.raises(InputError, match="Type a message first"):
        service.send("c1", text)
    assert service.count_conversations() == 0 and service.open("c1").messages == []


def test_a_megabyte_message_is_refused_with_the_limit(service, llm_server):
    with pytest.raises(InputError) as caught:
        service.send("c1", "x" * 1_000_000)
    assert "1,000,000" in str(caught.value) and "20,000" in str(caught.value)
    assert service.count_conversations() == 0 and llm_server.requests == []


def test_a_message_exactly_at_the_limit_round_trips(service, db_url, build_service):
    text = ("0123456789" * 2_000)[: service.settings.max_message_chars]
    send(service, "c1", text)
    assert reopened(service, db_url, build_service).open("c1").messages[0]["content"] == text


@pytest.mark.parametrize("pk", [
    "", "../../etc/passwd", "a b", "x" * 129, "<script>", "'; DROP TABLE burrow_apps; --",
    "a\x00b", "\ud800", "ünïcode", "-leading-dash", "semi;colon", "new\nline",
])
def test_malformed_conversation_ids_are_rejected(service, pk):
    assert not is_valid_conversation_id(pk)
    for call in (lambda: service.send(pk, "hello"), lambda: service.open(pk), lambda: service.retry(pk)):
        with pytest.raises(InputError, match="not a valid conversation id"):
            call()
    assert service.count_conversations() == 0


@pytest.mark.parametrize("pk", ["0f8fad5bd9cb469fa16570867728950e", "c1", "team.notes:2024_05-01", "x" * 128])
def test_well_formed_conversation_ids_work(service, pk):
    assert is_valid_conversation_id(pk)
    send(service, pk, "hello")
    assert service.open(pk).messages[0]["content"] == "hello"


# ---- cleaned ---------------------------------------------------------------------------------
def test_control_characters_are_stripped_before_storage(service, llm_server, db_url, build_service):
    """NUL and other C0 controls go (PostgreSQL rejects NUL in text); tabs and newlines stay."""
    raw = "a\x00b\x07c\x1b[31md\x7fe\tf\ng\r\nh"
    send(service, "c1", raw)
    cleaned = "abc[31mde\tf\ng\r\nh"
    assert llm_server.requests[-1]["messages"][-1]["content"] == cleaned
    other = reopened(service, db_url, build_service)
    assert other.open("c1").messages[0]["content"] == cleaned
    assert other.conversation("c1").title == "abc[31mde f g h"


def test_binary_garbage_and_broken_unicode_are_stored_cleaned(service, db_url, build_service):
    raw = bytes(range(256)).decode("latin-1") + "\ud800 lone surrogate \udfff"
    send(service, "c1", raw)
    stored = reopened(service, db_url, build_service).open("c1").messages[0]["content"]
    assert stored == clean_message(raw, 20_000)
    assert "\x00" not in stored and "\ud800" not in stored and "ÿ" in stored


def test_renaming_with_control_characters_stores_them_stripped(service):
    send(service, "c1", "hello")
    service.rename("c1", "bad\x00 ti\x07tle\x1b")
    assert service.conversation("c1").title == "bad title"
    service.rename("c1", "broken \ud800 unicode")
    assert service.conversation("c1").title == "broken ? unicode"


@pytest.mark.parametrize("search", ["a\x00b", "\ud800", "%", "_", "\\", "'"], ids=repr)
def test_odd_search_text_finds_nothing_instead_of_failing(service, search):
    send(service, "c1", "plain title")
    assert service.conversations(search=search) == []
    assert service.count_conversations(search) == 0


def test_search_of_control_characters_only_is_no_search(service):
    send(service, "c1", "plain title")
    assert [c.partition_key for c in service.conversations(search="\x00\x07")] == ["c1"]
    assert service.count_conversations("\x00") == 1


# ---- kept exactly ------------------------------------------------------------------------------
def test_emoji_and_right_to_left_text_round_trip_exactly(service, db_url, build_service):
    reply = send(service, "c1", EMOJI_RTL)
    assert "\u202e" in EMOJI_RTL and reply == f"Echo: {EMOJI_RTL_STORED}"
    other = reopened(service, db_url, build_service)
    assert [m["content"] for m in other.open("c1").messages] == [EMOJI_RTL_STORED, f"Echo: {EMOJI_RTL_STORED}"]
    assert other.conversation("c1").title == EMOJI_RTL_STORED[:TITLE_CHARS]
    assert [c.partition_key for c in other.conversations(search="שלום")] == ["c1"]
    other.rename("c1", "עברית 🦡 عربي")
    assert service.conversation("c1").title == "עברית 🦡 عربي"


@pytest.mark.parametrize("text", MARKUP, ids=range(len(MARKUP)))
def test_html_script_and_markdown_tricks_are_stored_verbatim(service, db_url, build_service, text):
    send(service, "c1", text)
    other = reopened(service, db_url, build_service)
    assert other.open("c1").messages[0]["content"] == text
    title = other.conversation("c1").title
    assert 0 < len(title) <= TITLE_CHARS and "\n" not in title and "`" not in title and "](" not in title


def test_sql_looking_text_in_messages_and_titles_is_only_text(service, db_url, build_service):
    tables = table_names(db_url)
    for i, text in enumerate(SQL):
        send(service, f"c{i}", text)
    service.rename("c0", SQL[0])
    service.rename("c1", SQL[1])
    assert table_names(db_url) == tables  # nothing dropped
    other = reopened(service, db_url, build_service)
    assert other.count_conversations() == 3
    assert {c.partition_key: c.title for c in other.conversations()} == {
        "c0": SQL[0], "c1": SQL[1], "c2": " ".join(SQL[2].split())}
    for i, text in enumerate(SQL):
        assert [without_facts(m) for m in other.open(f"c{i}").messages] == [
            {"role": "user", "content": text}, {"role": "assistant", "content": f"Echo: {text}"}]
    assert [c.partition_key for c in other.conversations(search="DROP TABLE")] == ["c0"]
    assert [c.partition_key for c in other.conversations(search="%_ wild")] == ["c2"]
    assert other.conversations(search="' OR '1'='1") == []
