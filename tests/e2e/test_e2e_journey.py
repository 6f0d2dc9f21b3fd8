"""The user journey of issue 3 in a real browser: chat, reload, switch conversations, browse history, fork,
and a server restart that loses nothing. Each test starts its own conversations on the module's server."""
from __future__ import annotations

import csv
import re
import uuid

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.pages import (
    MODEL_NAME, chat_input, conversation_button, conversation_id, echo, expect_no_traceback, messages, nav_to, open_app,
    save_screenshot, send, sidebar, wait_idle,
)

pytestmark = pytest.mark.e2e

RECORD_REPLY_TEXTS = """() => {
  window.__replyTexts = [];
  new MutationObserver(() => {
    const all = document.querySelectorAll('[data-testid="stChatMessage"]');
    const text = all.length ? all[all.length - 1].innerText : "";
    const seen = window.__replyTexts;
    if (seen[seen.length - 1] !== text) seen.push(text);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def tag() -> str:
    """A short random word, so titles and messages of different tests never collide."""
    return uuid.uuid4().hex[:6]


def start_conversation(page: Page, base_url: str, *texts: str) -> str:
    """Opens a new chat, sends the messages one by one and returns the conversation id."""
    open_app(page, base_url)
    for text in texts:
        send(page, text)
    key = conversation_id(page)
    assert key, f"no ?c= in {page.url}"
    return key



def test_two_turns_stream_and_survive_a_reload(page: Page, app_server, model):
    open_app(page, app_server.url)
    expect(page.locator(".stMarkdownBadge").filter(has_text=f"{MODEL_NAME} via 127.0.0.1").first).to_be_visible()
    model.chunk_delay = 0.08  # a 15-word reply then takes ~1.2 s to arrive, piece by piece
    page.evaluate(RECORD_REPLY_TEXTS)
    first = f"Plan a picnic {tag()} for four people with sandwiches fruit and cold lemonade please"
    send(page, first)
    texts = page.evaluate("window.__replyTexts")
    partial = {t for t in texts if "Echo: Plan a picnic" in t and echo(first) not in t}
    assert len(partial) >= 3, f"the reply did not arrive in pieces; texts seen: {texts}"

    send(page, "And a rainy-day backup plan?")
    expect(messages(page)).to_have_count(4)
    key = conversation_id(page)
    save_screenshot(page, "01-chat-two-turns")

    page.reload()
    wait_idle(page)
    assert conversation_id(page) == key
    expect(messages(page)).to_have_count(4)
    expect(messages(page).nth(1)).to_contain_text(echo(first))
    expect(messages(page).nth(3)).to_contain_text(echo("And a rainy-day backup plan?"))
    expect(conversation_button(page, key)).to_contain_text("Plan a picnic")
    expect_no_traceback(page)


def test_new_chat_then_switch_back_through_the_sidebar(page: Page, app_server):
    first_text, second_text = f"Garden question {tag()}", f"Bread recipe {tag()}"
    first = start_conversation(page, app_server.url, first_text)

    sidebar(page).get_by_role("button", name="New chat").click()
    expect(messages(page)).to_have_count(0)
    wait_idle(page)
    second = conversation_id(page)
    assert second and second != first
    send(page, second_text)
    expect(conversation_button(page, second)).to_contain_text(second_text)
    expect(conversation_button(page, first)).to_contain_text(first_text)
    save_screenshot(page, "02-second-conversation")

    conversation_button(page, first).click()
    expect(messages(page).first).to_contain_text(first_text)
    expect(messages(page)).to_have_count(2)
    expect(page).to_have_url(re.compile(f"c={first}"))
    expect(messages(page).filter(has_text=second_text)).to_have_count(0)
    wait_idle(page)

    search = sidebar(page).get_by_role("textbox", name="Search conversations")
    search.fill(second_text.split()[-1])  # the random tag: only the second conversation matches
    search.press("Enter")
    expect(conversation_button(page, first)).to_have_count(0)
    expect(conversation_button(page, second)).to_be_visible()
    wait_idle(page)


def history_rows(page: Page) -> list[dict[str, str]]:
    """The History table's rows, read through its own "Download as CSV" button."""
    table = page.get_by_test_id("stDataFrame")
    for attempt in range(5):  # the toolbar shows on hover; a rerun redrawing the page can move it away
        table.scroll_into_view_if_needed()
        table.hover()
        try:
            with page.expect_download(timeout=5_000) as download:
                table.get_by_role("button", name="Download as CSV").click(timeout=5_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 4:
                raise
            wait_idle(page)
    with open(download.value.path(), encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def context(new_context):
    """Downloads land where the test can read them: the File System Access picker is switched off."""
    context = new_context(accept_downloads=True)
    context.add_init_script("delete window.showSaveFilePicker;")
    return context


def test_history_page_lists_every_step(page: Page, app_server):
    key = start_conversation(page, app_server.url, f"History check {tag()}", "Second turn")
    nav_to(page, "History")
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()
    wait_idle(page)
    assert conversation_id(page) == key, "the History page lost the selected conversation"
    save_screenshot(page, "03-history")
    rows = history_rows(page)
    assert [(r["Step"], r["Action"], r["Status"]) for r in rows] == [
        ("0", "human_input", "completed"), ("1", "safety_check", "completed"), ("2", "ai_response", "completed"),
        ("3", "human_input", "completed"), ("4", "safety_check", "completed"), ("5", "ai_response", "completed"),
    ]
    expect(page.get_by_text("Step 5: ai_response")).to_be_visible()
    expect(page.get_by_test_id("stGraphVizChart")).to_be_visible()
    expect_no_traceback(page)

    nav_to(page, "Chat")  # and back: the navigation keeps the conversation
    expect(messages(page)).to_have_count(4)
    expect(messages(page).first).to_contain_text("History check")
    wait_idle(page)
    assert conversation_id(page) == key


def pick_snapshot(page: Page, step: int, action: str) -> None:
    """Chooses a snapshot in the History page's "Snapshot" select box and waits for its details."""
    page.get_by_test_id("stSelectbox").filter(has_text="Snapshot").click()
    page.get_by_role("option", name=f"Step {step} · {action} · completed").click()
    expect(page.get_by_text(f"Step {step}: {action}")).to_be_visible()
    wait_idle(page)


def test_fork_from_an_earlier_step_and_keep_chatting(page: Page, app_server):
    first = f"Fork me {tag()}"
    key = start_conversation(page, app_server.url, first, "Original second turn")
    nav_to(page, "History")
    expect(page.get_by_test_id("stDataFrame")).to_be_visible()
    pick_snapshot(page, 2, "ai_response")
    page.get_by_role("button", name="Fork from here").click()

    expect(page).to_have_url(re.compile(r"[?&]b="))
    expect(messages(page)).to_have_count(2)
    expect(messages(page).last).to_contain_text(echo(first))
    wait_idle(page)
    assert conversation_id(page) == key
    send(page, "A different second turn")
    expect(messages(page)).to_have_count(4)
    expect(page.get_by_text("Original second turn")).to_have_count(0)
    save_screenshot(page, "04-fork-continued")

    nav_to(page, "History")
    page.get_by_test_id("stSelectbox").filter(has_text="Branch").click()
    expect(page.get_by_role("option")).to_have_count(2)
    expect(page.get_by_role("option", name=re.compile("forked from .* @ step 2"))).to_be_visible()
    page.get_by_role("option", name=re.compile("original")).click()
    expect(page.get_by_text("6 snapshots")).to_be_visible()
    wait_idle(page)
    page.get_by_role("link", name="Open this branch in Chat").click()
    expect(messages(page)).to_have_count(4)
    expect(messages(page).nth(2)).to_contain_text("Original second turn")
    expect_no_traceback(page)


def test_everything_survives_a_server_restart(page: Page, app_server):
    server = app_server  # same port, database and tracker folder after the restart
    first_text, second_text = f"Before restart {tag()}", f"Also kept {tag()}"
    first = start_conversation(page, server.url, first_text, "One more turn")
    second = start_conversation(page, server.url, second_text)

    server.restart()
    page.goto(f"{server.url}/?c={first}")
    wait_idle(page)
    expect(messages(page)).to_have_count(4)
    expect(messages(page).first).to_contain_text(first_text)
    expect(messages(page).last).to_contain_text(echo("One more turn"))
    expect(conversation_button(page, first)).to_contain_text(first_text)
    expect(conversation_button(page, second)).to_contain_text(second_text)
    save_screenshot(page, "05-after-restart")

    conversation_button(page, second).click()
    expect(messages(page).first).to_contain_text(second_text)
    expect(messages(page)).to_have_count(2)
    send(page, "Still chatting after the restart")
    expect(messages(page)).to_have_count(4)
    expect(chat_input(page)).to_be_editable()
