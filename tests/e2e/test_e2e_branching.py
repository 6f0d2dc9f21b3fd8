"""Issue 12 in a real browser: edit a message, compare the two answers with the switcher, rate one,
and find all of it after the server restarts. Screenshots for people go to artifacts/issue12/."""
from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.pages import (
    ARTIFACTS, conversation_id, echo, expect_no_traceback, messages, open_app, save_screenshot, send, wait_idle,
    wait_turn_done,
)

pytestmark = pytest.mark.e2e

SHOTS = ARTIFACTS.parent / "issue12"


def branch_of(page: Page) -> str | None:
    from urllib.parse import parse_qs, urlparse

    return parse_qs(urlparse(page.url).query).get("b", [None])[0]


def key_locator(page: Page, prefix: str):  # noqa: ANN201 - a Playwright Locator
    return page.locator(f"[class*='st-key-{prefix}']")


@pytest.fixture
def own_server(streamlit_factory):
    """A server of this test's own, so it can be restarted."""
    return streamlit_factory("branching")


def test_edit_compare_rate_and_find_it_all_after_a_restart(page: Page, own_server):
    word = uuid.uuid4().hex[:6]
    open_app(page, own_server.url)
    send(page, f"Plan a trip {word}")
    send(page, "Somewhere warm\nwith a beach")  # Shift+Enter's newline must show as a line break
    key = conversation_id(page)
    second = messages(page).nth(2)
    expect(second.locator("p").first).to_contain_text("Somewhere warm")
    assert second.locator("p").first.inner_html().count("<br") == 1, second.locator("p").first.inner_html()
    assert branch_of(page) is None  # sending keeps the URL as it was: the conversation's latest branch

    save_screenshot(page, "00-two-turns", SHOTS)
    page.get_by_role("button", name="Edit").nth(1).click()
    box = page.get_by_label("Edit your message")
    expect(box).to_be_visible()
    box.fill("Somewhere cold, with mountains")
    save_screenshot(page, "01-editing", SHOTS)
    key_locator(page, "edit_send_").get_by_role("button").click()
    wait_turn_done(page, echo("Somewhere cold, with mountains"))
    edited_branch = branch_of(page)
    assert edited_branch is not None
    expect(page.get_by_text("2/2")).to_be_visible()
    save_screenshot(page, "02-second-version", SHOTS)

    key_locator(page, "prev_").get_by_role("button").click()
    wait_idle(page)
    expect(messages(page).filter(has_text="Somewhere warm")).to_have_count(2)  # the message and its echo
    expect(page.get_by_text("1/2")).to_be_visible()
    first_branch = branch_of(page)
    assert first_branch not in (None, edited_branch)
    save_screenshot(page, "03-first-version", SHOTS)

    messages(page).last.get_by_role("radio", name="Thumbs up").click()
    wait_idle(page)
    save_screenshot(page, "04-rated", SHOTS)

    own_server.restart()
    page.goto(f"{own_server.url}/?c={key}&b={first_branch}")
    wait_idle(page)
    expect_no_traceback(page)
    expect(page.get_by_text("1/2")).to_be_visible()
    expect(messages(page).filter(has_text="Somewhere warm")).to_have_count(2)
    expect(messages(page).last.get_by_role("radio", name="Thumbs up")).to_have_attribute("aria-checked", "true")
    expect(messages(page).last.get_by_role("radio", name="Thumbs down")).to_have_attribute("aria-checked", "false")
    save_screenshot(page, "05-after-restart", SHOTS)
    key_locator(page, "next_").get_by_role("button").click()
    wait_idle(page)
    expect(messages(page).filter(has_text="Somewhere cold, with mountains")).to_have_count(2)


def test_regenerate_in_the_browser(page: Page, app_server, llm_server):
    word = uuid.uuid4().hex[:6]
    open_app(page, app_server.url)
    send(page, f"Tell me a fact {word}")
    llm_server.reply = f"Another fact {word}"
    page.get_by_role("button", name="Regenerate").last.click()
    wait_turn_done(page, f"Another fact {word}")
    expect(page.get_by_text("2/2")).to_be_visible()
    save_screenshot(page, "06-regenerated", SHOTS)


def test_a_new_chat_is_listed_and_titled_while_its_first_reply_streams(page: Page, app_server, llm_server):
    llm_server.chunk_delay = 0.15  # a slow reply: ~6 s
    llm_server.reply = "slowly " * 40
    word = uuid.uuid4().hex[:6]
    open_app(page, app_server.url)
    from tests.e2e.pages import STOP, sidebar, submit

    submit(page, f"Brand new topic {word}")
    expect(page.locator(STOP).last).to_be_visible()  # still streaming
    expect(page.get_by_role("heading", name=f"Brand new topic {word}")).to_be_visible()
    expect(sidebar(page).get_by_role("button", name=f"Brand new topic {word}")).to_be_visible()
    expect(page.get_by_text("What can I help with?")).to_have_count(0)
    expect(messages(page).first).not_to_contain_text("slowly")  # no piece of the old frame left in the question
    expect(page.locator(STOP).last).to_be_visible()  # all of that before the reply ended
    save_screenshot(page, "07-first-reply-streaming", SHOTS)
    wait_turn_done(page, "slowly slowly")


def test_a_long_chat_opens_at_its_latest_message_at_once(page: Page, streamlit_factory, tmp_path):
    from core.chat import ChatService
    from core.llm import OfflineModel
    from core.settings import Settings

    url = f"sqlite:///{tmp_path / 'long.db'}"
    seeding = ChatService.from_settings(Settings(database_url=url, tracker_project=None), model=OfflineModel(0))
    for turn in range(200):
        assert seeding.send("long-chat", f"message number {turn}").wait(10)
    seeding.close()
    server = streamlit_factory("long", database_url=url)
    page.goto(f"{server.url}/?c=long-chat")
    expect(messages(page).last).to_contain_text("message number 199")
    wait_idle(page)
    expect(messages(page)).to_have_count(50)
    last = messages(page).last
    page.wait_for_timeout(300)  # a smooth scroll would still be under way here
    expect(last).to_be_in_viewport()
    expect(page.get_by_role("button", name="Show 50 earlier messages")).to_be_attached()
    save_screenshot(page, "08-long-chat-latest", SHOTS)
