"""Two `streamlit run` processes on one PostgreSQL database: the documented way to scale past one machine.
Both must list the same conversations and continue them, each seeing what the other wrote, also when
they write at the same moment."""
from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import (
    ARTIFACTS, STOP, conversation_button, conversation_id, echo, expect_no_traceback, messages, open_app,
    save_screenshot, send, submit, wait_idle, wait_turn_done,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture(scope="module")
def two_servers(streamlit_factory, module_pg_url):
    """Two app processes on one fresh PostgreSQL database, booted in parallel; stopped before it is dropped."""
    servers = [streamlit_factory(name, database_url=module_pg_url, start=False).spawn() for name in ("pg-a", "pg-b")]
    for server in servers:
        server.wait_healthy()
    yield servers
    streamlit_factory.stop_all(servers)


def slow_for(marker: str):
    """A reply that streams for a while (~40 pieces) when the message contains `marker`."""
    def reply(history: list[dict]) -> str:
        text = history[-1]["content"]
        return echo(text) + (" and more" * 20 if marker in text else "")
    return reply


def expect_both_turns_once(tab: Page) -> None:
    """After a reload: each question and its echo exactly once, A's first (its turn was under way first)."""
    tab.reload()
    wait_idle(tab)
    expect_no_traceback(tab)
    expect(messages(tab)).to_have_count(6)
    expect(messages(tab).filter(has_text="slow one via server A")).to_have_count(2)
    expect(messages(tab).filter(has_text="quick one via server B")).to_have_count(2)
    expect(messages(tab).nth(2)).to_contain_text("slow one via server A")
    expect(messages(tab).nth(4)).to_contain_text("quick one via server B")


def test_two_server_processes_share_and_continue_one_conversation(page: Page, context, two_servers, model):
    server_a, server_b = two_servers
    title = f"Team chat {uuid.uuid4().hex[:6]}"
    open_app(page, server_a.url)
    send(page, title)
    key = conversation_id(page)

    other = context.new_page()  # server B lists the conversation server A stored, and opens it
    open_app(other, server_b.url)
    entry = conversation_button(other, key)
    expect(entry).to_contain_text(title)
    entry.click()
    expect(messages(other)).to_have_count(2)
    expect(messages(other).last).to_contain_text(echo(title))
    wait_idle(other)

    model.reply, model.chunk_delay = slow_for("server A"), 0.05  # both write at the same moment
    submit(page, "slow one via server A")
    expect(messages(page).filter(has_text="Echo: slow one via server A").last).to_be_visible()  # streaming
    submit(other, "quick one via server B")
    wait_turn_done(page, "and more and more")
    wait_turn_done(other)
    save_screenshot(other, "20-postgres-server-b-concurrent")
    for tab in (page, other):
        expect_both_turns_once(tab)

    model.chunk_delay = 0.0  # and the conversation goes on, on either server
    send(other, "Back to normal on server B")
    page.reload()
    wait_idle(page)
    expect(messages(page)).to_have_count(8)
    expect(messages(page).last).to_contain_text(echo("Back to normal on server B"))
    save_screenshot(page, "21-postgres-server-a")


def test_a_reply_written_by_the_other_server_shows_up_when_saved(page: Page, context, two_servers, model):
    server_a, server_b = two_servers
    open_app(page, server_a.url)
    model.reply, model.chunk_delay = slow_for("written on A"), 0.06  # ~2.5 s
    submit(page, "A long one written on A")
    expect(page.locator(STOP)).to_be_visible()
    key = conversation_id(page)

    other = context.new_page()  # server B has no run of its own: it can only wait and look
    other.goto(f"{server_b.url}/?c={key}")
    waiting = other.get_by_test_id("stAlert").filter(has_text="A reply is being written on another server")
    expect(waiting).to_be_visible()
    expect(conversation_button(other, key)).to_contain_text("replying")
    save_screenshot(other, "06-reply-on-another-server", ARTIFACTS.parent / "issue10")
    expect(messages(other).last).to_contain_text("and more and more", timeout=15_000)  # polled, no click
    expect(waiting).to_have_count(0)
    expect(messages(other)).to_have_count(2)
    wait_turn_done(page, "and more and more")
