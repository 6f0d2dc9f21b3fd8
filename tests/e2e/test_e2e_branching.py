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
    first_branch = branch_of(page)

    save_screenshot(page, "00-two-turns", SHOTS)
    page.get_by_role("button", name="Edit").nth(1).click()
    box = page.get_by_label("Edit your message")
    expect(box).to_be_visible()
    box.fill("Somewhere cold, with mountains")
    save_screenshot(page, "01-editing", SHOTS)
    key_locator(page, "edit_send_").get_by_role("button").click()
    wait_turn_done(page, echo("Somewhere cold, with mountains"))
    assert branch_of(page) not in (None, first_branch)
    expect(page.get_by_text("2/2")).to_be_visible()
    save_screenshot(page, "02-second-version", SHOTS)

    key_locator(page, "prev_").get_by_role("button").click()
    wait_idle(page)
    expect(messages(page).filter(has_text="Somewhere warm")).to_have_count(2)  # the message and its echo
    expect(page.get_by_text("1/2")).to_be_visible()
    assert branch_of(page) == first_branch
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
