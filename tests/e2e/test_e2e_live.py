"""Issue 10 in a real browser: a reply outlives the page that started it.

During a slow streaming reply (~2.5 s) the user types in the sidebar search, opens another
conversation, opens History, reloads, or closes the tab; each time the reply must end complete and
saved, not "Stopped". Stop still stops it, a second tab sees it live, and a server shut down with
SIGTERM saves what had arrived as stopped. Screenshots for people go to artifacts/issue10/.
"""
from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import (
    ARTIFACTS, STOP, chat_input, conversation_button, conversation_id, echo, expect_no_traceback, messages, nav_to,
    open_app, save_screenshot, send, sidebar, submit, wait_idle, wait_turn_done,
)

pytestmark = pytest.mark.e2e

SHOTS = ARTIFACTS.parent / "issue10"
TAIL = " and more" * 20  # 40 more pieces
DELAY = 0.06  # seconds between pieces: ~2.5 s per slow reply


def tag() -> str:
    return uuid.uuid4().hex[:6]


def slow_reply(model) -> None:  # noqa: ANN001
    """Every reply streams for ~2.5 s."""
    model.reply = lambda history: echo(history[-1]["content"]) + TAIL
    model.chunk_delay = DELAY


def full(text: str) -> str:
    return echo(text) + TAIL


def start_streaming(page: Page, text: str) -> None:
    """Sends `text` and returns once its reply is visibly streaming (Stop shown, the reply begun)."""
    submit(page, text)
    expect(page.locator(STOP)).to_be_visible()
    expect(messages(page).filter(has_text=echo(text)).last).to_be_visible()


def expect_complete(page: Page, text: str) -> None:
    """The page shows the saved reply to `text` (Stop gone, page idle), complete and not stopped."""
    wait_turn_done(page, full(text))
    reply = messages(page).filter(has_text=echo(text)).last
    expect(reply).to_contain_text(full(text))
    expect(reply).not_to_contain_text("Stopped")
    expect_no_traceback(page)


def reload_and_expect_complete(page: Page, text: str) -> None:
    page.reload()
    wait_idle(page)
    expect_complete(page, text)
    expect(messages(page).filter(has_text=echo(text))).to_have_count(1)



def test_typing_in_the_sidebar_search_mid_reply(page: Page, app_server, model):
    open_app(page, app_server.url)
    slow_reply(model)
    text = f"Search while I talk {tag()}"
    start_streaming(page, text)
    save_screenshot(page, "01-reply-streaming", SHOTS)
    search = sidebar(page).get_by_role("textbox", name="Search conversations")
    search.fill(text.split()[-1])
    search.press("Enter")  # a rerun of the page, mid-reply
    expect(conversation_button(page, conversation_id(page))).to_be_visible()
    expect_complete(page, text)
    reload_and_expect_complete(page, text)


def test_opening_another_conversation_mid_reply_and_coming_back(page: Page, app_server, model):
    open_app(page, app_server.url)
    other_text = f"The other conversation {tag()}"
    send(page, other_text)
    other = conversation_id(page)
    sidebar(page).get_by_role("button", name="New chat").click()
    expect(messages(page)).to_have_count(0)
    wait_idle(page)
    slow_reply(model)
    text = f"Switch away while I talk {tag()}"
    start_streaming(page, text)
    key = conversation_id(page)
    conversation_button(page, other).click()
    expect(messages(page).first).to_contain_text(other_text)
    expect(conversation_button(page, key)).to_contain_text("replying")  # the sidebar marks it
    hourglass = conversation_button(page, key).get_by_role("img", name="hourglass_top icon").first
    expect(hourglass).to_have_css("animation-name", "burrow-hourglass")  # it turns (ui/style.css)
    save_screenshot(page, "05-sidebar-replying-mark", SHOTS)
    expect(conversation_button(page, key)).not_to_contain_text("replying", timeout=10_000)  # polled, then gone
    conversation_button(page, key).click()
    expect(messages(page).first).to_contain_text(text)
    expect_complete(page, text)


def test_opening_history_mid_reply_and_coming_back(page: Page, app_server, model):
    open_app(page, app_server.url)
    slow_reply(model)
    text = f"Look at history while I talk {tag()}"
    start_streaming(page, text)
    nav_to(page, "History")
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    nav_to(page, "Chat")  # back within the reply: the page attaches to it again
    expect(messages(page).first).to_contain_text(text)
    expect_complete(page, text)


def test_reloading_mid_reply_attaches_to_it(page: Page, app_server, model):
    open_app(page, app_server.url)
    slow_reply(model)
    text = f"Reload while I talk {tag()}"
    start_streaming(page, text)
    page.reload()
    expect(page.locator(STOP)).to_be_visible()  # the reloaded page follows the same reply, live
    expect_complete(page, text)


def test_a_waiting_line_shows_until_the_first_words(page: Page, app_server, model):
    open_app(page, app_server.url)
    slow_reply(model)
    model.chunk_delay, model.first_byte_delay = 0.02, 2.0  # the model thinks before its first word
    text = f"Take your time {tag()}"
    submit(page, text)
    waiting = messages(page).last.get_by_text("Waiting for the first words")
    expect(waiting).to_be_visible()
    expect(page.locator(STOP)).to_be_visible()
    save_screenshot(page, "00-waiting-for-the-first-words", SHOTS)
    expect_complete(page, text)
    expect(waiting).to_have_count(0)


def test_stop_still_stops_the_reply(page: Page, app_server, model):
    open_app(page, app_server.url)
    slow_reply(model)
    text = f"Stop me {tag()}"
    start_streaming(page, text)
    page.locator(STOP).get_by_role("button", name="Stop").click()
    wait_turn_done(page)
    reply = messages(page).last
    expect(reply).to_contain_text("Stopped")
    expect(reply).to_contain_text(echo(text))
    expect(reply).not_to_contain_text(full(text))
    page.reload()
    wait_idle(page)
    expect(messages(page).last).to_contain_text("Stopped")


def test_a_second_tab_sees_the_reply_live(page: Page, context, app_server, model):
    open_app(page, app_server.url)
    slow_reply(model)
    text = f"Watch me in two tabs {tag()}"
    start_streaming(page, text)
    other = context.new_page()
    other.goto(f"{app_server.url}/?c={conversation_id(page)}")
    expect(other.locator(STOP)).to_be_visible()  # live in the second tab too, with its own Stop
    expect(messages(other).filter(has_text=echo(text)).last).to_be_visible()
    save_screenshot(other, "02-second-tab-live", SHOTS)
    expect_complete(other, text)
    expect_complete(page, text)


def test_closing_the_tab_mid_reply_still_saves_it(page: Page, context, app_server, model):
    open_app(page, app_server.url)
    slow_reply(model)
    text = f"Close the tab while I talk {tag()}"
    start_streaming(page, text)
    key = conversation_id(page)
    page.close()
    later = context.new_page()
    open_app(later, app_server.url, conversation=key)  # attaches if still replying, else the saved reply
    expect_complete(later, text)


def test_a_failed_reply_after_a_reload_says_why_and_marks_the_message(page: Page, app_server, model):
    open_app(page, app_server.url)
    send(page, f"First, a good turn {tag()}")
    model.fail_next(500, times=3, retry_after_ms=1)  # and the client's two retries
    text = f"This one fails {tag()}"
    submit(page, text)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    page.reload()
    wait_idle(page)
    expect(page.get_by_test_id("stAlert").filter(has_text="model server failed (500)")).to_be_visible()
    expect(messages(page).last).to_contain_text("No reply")
    save_screenshot(page, "03-failed-reply-after-reload", SHOTS)
    page.get_by_role("button", name="Retry").click()
    wait_turn_done(page, echo(text))
    expect(page.get_by_text("No reply")).to_have_count(0)


def test_an_unanswered_message_is_marked_after_the_conversation_moves_on(page: Page, app_server, model):
    open_app(page, app_server.url)
    model.fail_next(500, times=3, retry_after_ms=1)
    first = f"Nobody answers this {tag()}"
    submit(page, first)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    wait_idle(page)
    second = f"So I ask again {tag()}"
    send(page, second)
    expect(messages(page)).to_have_count(3)
    expect(messages(page).first).to_contain_text("No reply")
    expect(messages(page).nth(1)).not_to_contain_text("No reply")
    save_screenshot(page, "04-unanswered-message", SHOTS)


def test_a_server_shut_down_mid_reply_saves_it_as_stopped(page: Page, streamlit_factory, model):
    server = streamlit_factory("shutdown")
    open_app(page, server.url)
    slow_reply(model)
    text = f"Shut down while I talk {tag()}"
    start_streaming(page, text)
    key = conversation_id(page)
    server.restart()  # SIGTERM, as Ctrl+C or a deploy would: the service closes its runs first
    page.goto(f"{server.url}/?c={key}")
    wait_idle(page)
    reply = messages(page).last
    expect(reply).to_contain_text(echo(text))
    expect(reply).to_contain_text("Stopped")
    expect(chat_input(page)).to_be_editable()

