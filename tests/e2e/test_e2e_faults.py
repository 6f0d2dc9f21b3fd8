"""Issue 5 in a real browser: hostile message text, two tabs writing to one conversation, a failing model
with Retry, and bad conversation links. Nothing may be lost, executed, or shown as a traceback."""
from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import (
    chat_input, conversation_id, echo, expect_no_traceback, messages, nav_to, open_app, save_screenshot, send, submit,
    wait_idle, wait_turn_done,
)

pytestmark = pytest.mark.e2e

HOSTILE = ('<b>not bold</b> <img src=x onerror="window.__pwned=2"> '
           '<script>window.__pwned=1</script> and **real markdown**')


@pytest.fixture(scope="module")
def app_server(streamlit_factory):
    """No SDK retries here, so one injected model error is one failed turn."""
    return streamlit_factory("faults", BURROW_MAX_RETRIES="0")


def start_conversation(page: Page, base_url: str, text: str) -> str:
    open_app(page, base_url)
    send(page, text)
    return conversation_id(page)


def expect_hostile_text_inert(page: Page) -> None:
    """The markup shows as literal text, no script ran, and Markdown still renders."""
    assert page.evaluate("typeof window.__pwned") == "undefined"
    user = messages(page).filter(has_text="not bold").first
    expect(user).to_contain_text("<script>window.__pwned=1</script>")
    expect(user).to_contain_text('<img src=x onerror="window.__pwned=2">')
    expect(user.locator("script, img[src=x], b")).to_have_count(0)
    expect(user.locator("strong")).to_have_text("real markdown")


def test_raw_html_and_script_in_a_message_render_as_text(page: Page, app_server):
    open_app(page, app_server.url)
    send(page, HOSTILE, reply_contains="Echo: <b>not bold</b>", shown="<b>not bold</b>")
    expect_hostile_text_inert(page)
    expect(messages(page).last).to_contain_text("Echo: <b>not bold</b>")
    save_screenshot(page, "10-html-as-text")

    page.reload()  # and again when the messages come back from the database
    wait_idle(page)
    expect_hostile_text_inert(page)
    expect_no_traceback(page)


def slow_for(marker: str):
    """A reply that streams for a while (~40 pieces) when the message contains `marker`."""
    def reply(messages: list[dict]) -> str:
        text = messages[-1]["content"]
        return echo(text) + (" and more" * 20 if marker in text else "")
    return reply


def test_two_tabs_sending_to_one_conversation_lose_nothing(page: Page, context, app_server, model):
    key = start_conversation(page, app_server.url, f"Shared {uuid.uuid4().hex[:6]}")
    other = context.new_page()
    open_app(other, app_server.url, conversation=key)
    expect(other.get_by_test_id("stChatMessage")).to_have_count(2)

    model.reply, model.chunk_delay = slow_for("first tab"), 0.05
    submit(page, "from the first tab")
    expect(messages(page).filter(has_text="Echo: from the first tab").last).to_be_visible()  # still streaming
    submit(other, "from the second tab")  # its view is stale: it has not seen the first tab's message
    wait_turn_done(page, "and more and more")
    wait_turn_done(other, echo("from the second tab"))

    # The second tab now shows the latest state (the first tab's turn above its own), not its stale copy;
    # a notice may say so too, depending on when its run read the conversation.
    expect(messages(other)).to_have_count(6)
    expect(messages(other).nth(2)).to_contain_text("from the first tab")
    expect(messages(other).nth(4)).to_contain_text("from the second tab")
    save_screenshot(other, "11-second-tab-latest-state")
    for tab in (page, other):
        tab.reload()
        wait_idle(tab)
        expect(messages(tab)).to_have_count(6)
        expect(messages(tab).nth(2)).to_contain_text("from the first tab")
        expect(messages(tab).nth(4)).to_contain_text("from the second tab")
    nav_to(page, "History")  # one branch only: no silent fork
    expect(page.get_by_text("9 snapshots")).to_be_visible()  # three turns of three steps
    expect(page.get_by_test_id("stSelectbox").filter(has_text="Branch")).to_have_count(0)


def test_model_error_shows_a_readable_message_and_retry_works(page: Page, app_server, model):
    key = start_conversation(page, app_server.url, f"Before the outage {uuid.uuid4().hex[:6]}")
    model.fail_next(500, times=1)
    submit(page, "Are you there?")
    error = page.get_by_test_id("stAlert").filter(has_text="model server failed (500)")
    expect(error).to_be_visible()
    retry = page.get_by_role("button", name="Retry")
    expect(retry).to_be_visible()
    expect(messages(page).last).to_contain_text("Are you there?")  # the question is kept
    expect_no_traceback(page)
    save_screenshot(page, "12-model-error")

    page.reload()  # the failure is stored, not only shown: Retry survives a reload
    wait_idle(page)
    assert conversation_id(page) == key
    expect(messages(page).last).to_contain_text("Are you there?")
    expect(retry).to_be_visible()
    retry.click()
    wait_turn_done(page, echo("Are you there?"))
    expect(retry).to_have_count(0)
    expect(page.get_by_test_id("stAlert").filter(has_text="failed")).to_have_count(0)
    send(page, "Good, carry on")
    expect(messages(page)).to_have_count(6)
    save_screenshot(page, "13-after-retry")


@pytest.mark.parametrize(("path", "bad_id", "message"), [
    ("", "0123456789abcdef0123456789abcdef", "This conversation does not exist"),
    ("", "../../etc/passwd<script>window.__pwned=1</script>", "is not a valid conversation link"),
    ("history", "fedcba9876543210fedcba9876543210", "This conversation does not exist"),
], ids=["unknown", "malformed", "unknown-on-history"])
def test_a_bad_conversation_link_shows_a_clear_message(page: Page, app_server, path, bad_id, message):
    page.goto(f"{app_server.url}/{path}?c={quote(bad_id)}")
    wait_idle(page)
    expect(page.get_by_test_id("stAlert").filter(has_text=message)).to_be_visible()
    expect_no_traceback(page)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    save_screenshot(page, f"14-bad-link-{path or 'chat'}-{'malformed' if '<' in bad_id else 'unknown'}")

    page.get_by_role("button", name="Start a new chat").click()  # the way back: an empty, working chat
    expect(page.get_by_test_id("stAlert").filter(has_text=message)).to_have_count(0)
    expect(chat_input(page)).to_be_editable()
    wait_idle(page)
    assert conversation_id(page) not in (None, bad_id)
