"""Issue 10 under AppTest: a reply belongs to the service, not to the script run that started it.

`run_for(at, s)` ends a script run after `s` seconds the way a click, a reload or a closed tab
does, and keeps what the page showed then (a reply still streaming). The reply must go on and be
saved complete; only Stop stops it. `service` is a second service on the same database: for the
app, another server.
"""
from __future__ import annotations

from apptest_helpers import button, messages, ok, run_for, wait_for

from core.chat import STOPPED, ChatService

PIECES = 40  # a slow reply: ~41 pieces, 0.05 s apart (~2 s)
TAIL = " and more" * PIECES


def slow(llm_server, delay: float = 0.05) -> None:  # noqa: ANN001
    llm_server.reply = lambda history: f"Echo: {history[-1]['content']}{TAIL}"
    llm_server.chunk_delay = delay


def saved(persister, key: str) -> list[dict]:  # noqa: ANN001
    found = persister.load(key, None)
    return list(found["state"]["chat_history"]) if found else []


def wait_saved_reply(persister, key: str, count: int = 2) -> dict:  # noqa: ANN001
    """The assistant message of the conversation's `count`th message, once saved."""
    history = wait_for(lambda: (h := saved(persister, key)) and len(h) >= count and h[-1]["role"] == "assistant"
                       and h, timeout=15, what=f"reply {count // 2} of {key} to be saved")
    return history[count - 1]


def start_slow_reply(app, llm_server, text: str = "Tell me a long story"):  # noqa: ANN001, ANN201
    """Sends `text` and cuts the page short while the reply streams; the page as the user saw it."""
    slow(llm_server)
    ok(app.run())
    app.chat_input[0].set_value(text)
    return ok(run_for(app, 0.5, after=lambda: llm_server.requests))  # ~10 pieces into the reply


def test_a_reply_streams_with_a_stop_button_and_ends_complete_after_the_page_reruns(app, make_app, llm_server,
                                                                                   persister):
    at = start_slow_reply(app, llm_server)
    key = at.query_params["c"]
    shown = messages(at)
    assert shown[0] == ("user", "Tell me a long story")
    assert shown[1][0] == "assistant" and shown[1][1].startswith("Echo: Tell me")  # partial, live
    assert len(shown[1][1]) < len(f"Echo: Tell me a long story{TAIL}")
    assert button(at, "Stop")

    reply = wait_saved_reply(persister, key)  # the script run that started it is long gone
    assert reply["content"] == f"Echo: Tell me a long story{TAIL}"
    assert reply.get("status") != STOPPED
    assert len(saved(persister, key)) == 2
    reloaded = ok(make_app(c=key).run())
    assert messages(reloaded)[-1] == ("assistant", reply["content"])
    assert not any("Stopped" in c.value for c in reloaded.caption)


def test_a_reply_that_ends_while_the_page_draws_is_still_shown(app, llm_server, monkeypatch):
    """The page read the conversation while the reply was live, and the reply ended before the page
    attached to it: the page must still show it (replayed from the ended run), not the question alone."""
    slow(llm_server, delay=0.01)
    real_open = ChatService.open

    def open_then_let_the_run_end(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        view = real_open(self, *args, **kwargs)
        if view.run is not None:
            assert view.run.wait(15)
        return view

    monkeypatch.setattr(ChatService, "open", open_then_let_the_run_end)
    ok(app.run())
    ok(app.chat_input[0].set_value("Finish before I look").run())
    assert messages(app) == [("user", "Finish before I look"), ("assistant", f"Echo: Finish before I look{TAIL}")]


def test_switching_conversation_mid_reply_keeps_it_going_and_the_sidebar_marks_it(app, llm_server, persister, seed):
    other = seed("another talk")
    at = start_slow_reply(app, llm_server)
    key = at.query_params["c"]
    ok(at.sidebar.button(key=f"open_{other}").click().run())  # a click: a new script run
    assert at.query_params["c"] == other
    assert messages(at) == [("user", "another talk")]
    assert "replying" in at.sidebar.button(key=f"open_{key}").label
    assert "replying" not in at.sidebar.button(key=f"open_{other}").label

    reply = wait_saved_reply(persister, key)
    assert reply["content"].endswith(TAIL) and reply.get("status") != STOPPED
    ok(at.sidebar.button(key=f"open_{key}").click().run())
    assert messages(at)[-1] == ("assistant", reply["content"])
    assert "replying" not in at.sidebar.button(key=f"open_{key}").label


def test_typing_a_search_mid_reply_does_not_cut_it(app, llm_server, persister):
    at = start_slow_reply(app, llm_server)
    key = at.query_params["c"]
    ok(run_for(at.text_input(key="sidebar_search").set_value("long"), 0.3))  # attaches again, then is cut
    reply = wait_saved_reply(persister, key)
    assert reply["content"].endswith(TAIL) and reply.get("status") != STOPPED


def test_stop_on_the_page_stops_the_reply_and_keeps_what_arrived(app, llm_server, persister):
    at = start_slow_reply(app, llm_server)
    key = at.query_params["c"]
    ok(button(at, "Stop").click().run())  # waits for the stopped reply to be saved, then shows it
    reply = saved(persister, key)[-1]
    assert reply["role"] == "assistant" and reply.get("status") == STOPPED
    assert reply["content"].startswith("Echo: Tell me") and not reply["content"].endswith(TAIL)
    assert messages(at)[-1] == ("assistant", reply["content"])
    assert any("Stopped" in c.value for c in at.chat_message[-1].caption)
    assert not [b for b in at.button if b.label == "Stop"]


def test_a_second_tab_sees_the_reply_live_and_can_stop_it(app, make_app, llm_server, persister):
    at = start_slow_reply(app, llm_server)
    key = at.query_params["c"]
    first_seen = messages(at)[1][1]
    second = ok(run_for(make_app(c=key), 0.4))  # another tab opens the conversation mid-reply
    live = messages(second)
    assert live[0] == ("user", "Tell me a long story")
    assert live[-1][0] == "assistant" and live[-1][1].startswith(first_seen)  # all so far, then more
    assert len(live[-1][1]) > len(first_seen)
    ok(button(second, "Stop").click().run())  # Stop works from any tab showing the conversation
    assert saved(persister, key)[-1].get("status") == STOPPED


def test_a_reply_written_on_another_server_is_shown_when_saved(make_app, llm_server, service, persister):
    slow(llm_server)
    key = service.new_conversation_id()
    run = service.send(key, "Hello from the other server")
    wait_for(lambda: saved(persister, key), what="the other server to save the message")
    at = ok(make_app(c=key).run())
    assert any("another server" in i.value for i in at.info)
    assert "replying" in at.sidebar.button(key=f"open_{key}").label
    assert not [b for b in at.button if b.label == "Retry"]
    assert not any("No reply" in c.value for c in at.caption)  # not unanswered: its reply is coming
    assert run.wait(15)
    ok(at.run())  # what the page's once-a-second look does when the reply is saved
    assert messages(at)[-1] == ("assistant", f"Echo: Hello from the other server{TAIL}")
    assert not any("another server" in i.value for i in at.info)


def test_a_failed_reply_shows_its_saved_reason_and_retry_after_a_reload(app, make_app, llm_server):
    llm_server.fail_next(500, times=3, retry_after_ms=1)
    ok(app.run())
    ok(app.chat_input[0].set_value("Still there?").run())
    reloaded = ok(make_app(c=app.query_params["c"]).run())  # a fresh session: only the database remembers
    assert "model server failed (500)" in reloaded.error[0].value
    assert any("No reply" in c.value and "Retry" in c.value for c in reloaded.chat_message[0].caption)
    ok(button(reloaded, "Retry").click().run())
    assert messages(reloaded)[-1] == ("assistant", "Echo: Still there?")
    assert not reloaded.error
    assert not any("No reply" in c.value for c in reloaded.caption)


def test_an_unanswered_message_stays_marked_after_the_conversation_moves_on(make_app, seed):
    key = seed("never answered", steps=1)  # saved by human_input, then the turn was abandoned
    at = ok(make_app(c=key).run())
    assert any("No reply" in c.value for c in at.chat_message[0].caption)
    assert any("Continue" == b.label for b in at.button)


def test_a_busy_server_keeps_the_message_to_send_again(make_app, monkeypatch, llm_server, persister):
    monkeypatch.setenv("BURROW_MAX_RUNS", "1")
    first = start_slow_reply(make_app(), llm_server)
    other = ok(make_app().run())  # another tab, a new chat, while the only run slot is taken
    ok(other.chat_input[0].set_value("Are you free?").run())
    assert "limit" in other.warning[0].value and "try again" in other.warning[0].value
    assert other.text_area(key="chat_draft_text").value == "Are you free?"
    assert messages(other) == []
    wait_saved_reply(persister, first.query_params["c"])
    llm_server.reset()
    ok(other.text_area(key="chat_draft_text").set_value("Are you free now?").run())
    ok(button(other, "Send").click().run())
    assert messages(other) == [("user", "Are you free now?"), ("assistant", "Echo: Are you free now?")]
    assert not other.warning and not [t for t in other.text_area if t.key == "chat_draft_text"]


def test_a_message_sent_while_a_reply_streams_waits_its_turn(app, llm_server, persister):
    at = start_slow_reply(app, llm_server)
    key = at.query_params["c"]
    at.chat_input[0].set_value("And one more thing")
    ok(run_for(at, 0.3))  # the first reply still streams; the second message waits below it
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]
    assert at.chat_message[2].markdown[0].value == "And one more thing"
    assert any("reply above" in c.value for c in at.chat_message[3].caption)
    assert len([b for b in at.button if b.label == "Stop"]) == 2
    ok(at.run())  # a later look: everything saved, in order
    assert messages(at) == [
        ("user", "Tell me a long story"), ("assistant", f"Echo: Tell me a long story{TAIL}"),
        ("user", "And one more thing"), ("assistant", f"Echo: And one more thing{TAIL}"),
    ]
    assert [m.get("status") for m in saved(persister, key)] == [None] * 4


def test_stop_on_a_page_reaches_a_reply_written_on_another_server(make_app, llm_server, service, persister):
    slow(llm_server, delay=0.1)
    key = service.new_conversation_id()
    run = service.send(key, "Write a lot on the other server")
    wait_for(lambda: run.text, what="the other server's first words")
    at = ok(make_app(c=key).run())
    assert any("another server" in i.value for i in at.info)
    ok(button(at, "Stop").click().run())
    assert run.wait(5) and run.outcome == "stopped"  # the other server saw the request at its next heartbeat
    assert saved(persister, key)[-1].get("status") == STOPPED


def test_the_waiting_line_says_when_the_model_client_retries(app, llm_server):
    llm_server.fail_next(429, retry_after=1.5)  # the openai client waits, then asks again
    ok(app.run())
    app.chat_input[0].set_value("Are you busy?")
    at = ok(run_for(app, 0.8, after=lambda: llm_server.requests))  # during the client's wait
    lines = [c.value for chat in at.chat_message for c in chat.caption]
    assert any("The model server answered 429; retrying (1 of" in line for line in lines), lines
