"""Search as you type in a real browser (headless Chromium on `streamlit run`): typing, without Enter,
shows the hit with its match in bold; clicking it opens the conversation with m= in the URL.
Screenshots in artifacts/issue15/ (wide and narrow)."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import ROOT
from tests.e2e.pages import conversation_id, open_app, save_screenshot, send, sidebar, wait_idle

pytestmark = pytest.mark.e2e
SHOTS = ROOT / "artifacts" / "issue15"


@pytest.mark.parametrize("viewport", [{"width": 1400, "height": 900}, {"width": 400, "height": 800}],
                         ids=["wide", "narrow"])
def test_typing_finds_a_message_and_a_click_opens_it(page: Page, app_server, viewport):
    word = "zq" + uuid.uuid4().hex[:8]
    page.set_viewport_size(viewport)
    open_app(page, app_server.url)
    send(page, f"notes about the {word} migration")
    wanted = conversation_id(page)
    open_app(page, app_server.url)  # a new chat: the hit must bring the old one back
    if viewport["width"] < 768:
        page.get_by_test_id("stExpandSidebarButton").click()
    box = sidebar(page).get_by_role("textbox", name="Search conversations")
    box.press_sequentially(word[:7], delay=40)  # no Enter: the input commits after a pause
    hit = sidebar(page).locator("button").filter(has=page.locator("strong", has_text=word))
    expect(hit.first).to_be_visible(timeout=15_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    save_screenshot(page, f"search-{viewport['width']}", folder=Path(SHOTS))
    hit.first.click()
    wait_idle(page)
    page.wait_for_function("(k) => location.search.includes('c=' + k) && location.search.includes('m=')", arg=wanted)


def test_a_hit_in_an_early_message_of_a_long_chat_is_shown_and_scrolled_to(page: Page, app_server):
    """A match in message 2 of 60: the chat shows the latest 50 at first, so the hit must bring the
    earlier ones in, scroll to that message and mark it."""
    from core.chat import ChatService
    from core.llm import OfflineModel
    from core.settings import Settings

    word = "zq" + uuid.uuid4().hex[:8]
    service = ChatService.from_settings(Settings(database_url=app_server.env["BURROW_DATABASE_URL"],
                                                 tracker_project=None), model=OfflineModel(word_delay=0))
    try:
        key = service.new_conversation_id()
        for turn in range(30):
            run = service.send(key, f"turn {turn} about the {word} plan" if turn == 1 else f"turn {turn}")
            "".join(run)
    finally:
        service.close()
    page.set_viewport_size({"width": 1400, "height": 900})
    open_app(page, app_server.url)
    sidebar(page).get_by_role("textbox", name="Search conversations").press_sequentially(word, delay=20)
    hit = sidebar(page).locator("button").filter(has=page.locator("strong", has_text=word))
    expect(hit.first).to_be_visible(timeout=15_000)
    hit.first.click()
    wait_idle(page)
    target = page.locator(".st-key-chat_target")
    expect(target).to_contain_text(f"turn 1 about the {word} plan")
    expect(target).to_be_in_viewport()
    page.wait_for_timeout(1500)  # the page settles: the message must still be in view
    expect(target).to_be_in_viewport()
    page.screenshot(path=str(SHOTS / "search-hit-scrolled.png"))  # the viewport: what the user sees
