"""Small page helpers for the e2e tests: open the app, send a message, wait for a run to finish.

They wait on what a user would see (or on Streamlit's own "script finished" marker), never on time.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import Locator, Page, expect

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "e2e"
API_KEY = "sk-test-e2e-secret"
MODEL_NAME = "e2e-fake-model"  # the servers' BURROW_MODEL; the model badge shows it
IDLE = "[data-testid='stApp'][data-test-connection-state='CONNECTED'][data-test-script-state='notRunning']"
CHAT_INPUT = "stChatInputTextArea"
STOP = "[class*='st-key-chat_stop_']"  # the Stop button of a reply being written
TRACEBACK_MARKERS = ("Traceback", "stException")


def wait_idle(page: Page, timeout: float = 20_000) -> None:
    """Waits until the browser is connected and the script run has finished."""
    page.locator(IDLE).wait_for(state="attached", timeout=timeout)


def open_app(page: Page, base_url: str, path: str = "", conversation: str | None = None) -> None:
    """Loads a page of the app (optionally with ?c=<conversation>) and waits for its first run."""
    url = f"{base_url}/{path.lstrip('/')}"
    if conversation is not None:
        url += f"?c={conversation}"
    page.goto(url)
    wait_idle(page)


def chat_input(page: Page) -> Locator:
    return page.get_by_test_id(CHAT_INPUT)


def messages(page: Page) -> Locator:
    return page.get_by_test_id("stChatMessage")


def sidebar(page: Page) -> Locator:
    return page.get_by_test_id("stSidebar")


def conversation_button(page: Page, key: str) -> Locator:
    """The sidebar entry that opens conversation `key`.

    While a script run is in progress, Streamlit keeps an invisible copy of a keyed element that
    moved (`data-retained`, display: none) at its old place; only the real one is meant here.
    """
    return sidebar(page).locator(f".st-key-open_{key}:not([data-retained])")


def submit(page: Page, text: str) -> None:
    """Types a message and presses Enter, without waiting for the reply."""
    box = chat_input(page)
    expect(box).to_be_editable()
    box.fill(text)
    box.press("Enter")


def wait_turn_done(page: Page, reply_contains: str | None = None) -> None:
    """The reply is shown and the page has rerun from the database (the Stop button is gone)."""
    if reply_contains is not None:
        expect(messages(page).filter(has_text=reply_contains).last).to_be_visible()
    expect(page.locator(STOP)).to_have_count(0)
    wait_idle(page)


def send(page: Page, text: str, reply_contains: str | None = None, shown: str | None = None) -> None:
    """Sends a message and waits until its turn is saved and the page shows the stored state.

    `shown` is the part of the message visible on the page (Markdown is rendered), default `text`.
    """
    submit(page, text)
    expect(messages(page).filter(has_text=shown or text).last).to_be_visible()
    wait_turn_done(page, reply_contains if reply_contains is not None else echo(text))


def echo(text: str) -> str:
    """What the fake model answers to `text` (see tests/conftest.py)."""
    return f"Echo: {text}"


def nav_to(page: Page, title: str) -> None:
    """Clicks a navigation entry in the sidebar ("Chat" or "History")."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()


def conversation_id(page: Page) -> str | None:
    """The ?c= query parameter of the page's current URL."""
    values = parse_qs(urlparse(page.url).query).get("c")
    return values[0] if values else None


def expect_no_traceback(page: Page) -> None:
    """No Python traceback and no Streamlit exception box anywhere on the page."""
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("Traceback")


def save_screenshot(page: Page, name: str, folder: Path = ARTIFACTS) -> Path:
    """Saves a full-page PNG under artifacts/e2e/ (gitignored; or `folder`) for people to look at."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception as exc:  # noqa: BLE001 - a closed page must not hide the real failure
        print(f"screenshot {name} failed: {exc}")
    return path
