"""Issue 13 in a real browser: nothing is fetched from other sites, History keeps one layout and one
selection, the sidebar on a narrow screen, light and dark themes, and the loopback-only address."""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import uuid
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import ROOT, StreamlitServer
from tests.e2e.pages import (
    conversation_button, conversation_id, messages, nav_to, open_app, save_screenshot, send, sidebar, wait_idle,
)

pytestmark = pytest.mark.e2e

NARROW = {"width": 400, "height": 800}
WIDE = {"width": 1400, "height": 900}
ROW_PX, HEADER_PX = 35, 38  # the History table's row and header heights (ui/views/history.py)
# Every width the main column has had since the page loaded, transient ones included.
WATCH_WIDTHS = """() => {
  window.__widths = new Set();
  const watch = () => {
    const main = document.querySelector('[data-testid="stMainBlockContainer"]');
    if (main) window.__widths.add(Math.round(main.getBoundingClientRect().width));
    requestAnimationFrame(watch);
  };
  watch();
}"""


def tag() -> str:
    return uuid.uuid4().hex[:6]


# ---- no request leaves the machine -------------------------------------------------------------
def test_no_request_leaves_the_machine(page: Page, app_server):
    """Every request and WebSocket of a whole visit (Chat, a reply, History, a fork) goes to the app."""
    origin = urlparse(app_server.url).netloc
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.on("websocket", lambda socket_: seen.append(socket_.url))
    open_app(page, app_server.url)
    send(page, f"Offline please {tag()}")
    nav_to(page, "History")
    expect(page.get_by_test_id("stGraphVizChart")).to_be_visible()
    wait_idle(page)
    page.get_by_role("button", name="Fork from here").click()
    expect(messages(page)).to_have_count(2)
    wait_idle(page)
    page.reload()
    wait_idle(page)
    icon = page.locator("link[rel*='icon']").first.get_attribute("href") or ""
    assert urlparse(icon).netloc in ("", origin), f"the page icon comes from {icon}"
    outside = sorted({url for url in seen if not url.startswith(("data:", "blob:")) and urlparse(url).netloc != origin})
    assert outside == [], f"requests that left the machine: {outside}"
    assert any("/_stcore/stream" in url for url in seen)  # the recording saw the app's own traffic


# ---- History: one layout, one selection ----------------------------------------------------------
def _table(page: Page) -> Locator:
    return page.get_by_test_id("stDataFrame")


def _ticked_step(page: Page) -> str:
    """The Step cell of the table's ticked row (the grid's accessible copy says which row is selected)."""
    ticked = _table(page).locator("tr[aria-selected='true'] td").first
    expect(ticked).to_be_attached()
    return ticked.inner_text().strip()


def _snapshot_box(page: Page) -> Locator:
    # Not the hidden copy Streamlit keeps of a moved element while a run is in progress (data-retained).
    boxes = page.locator('[data-testid="stSelectbox"]:not([data-retained]):not([data-retained] *)')
    return boxes.filter(has_text="Snapshot").locator("input")


def _tick_row(page: Page, index: int) -> None:
    """Clicks the selection box of row `index` (0 = the first row of the page); the grid is a canvas."""
    box = _table(page).bounding_box()
    page.mouse.click(box["x"] + 16, box["y"] + HEADER_PX + ROW_PX * index + ROW_PX / 2)


def _shown(page: Page, step: int) -> None:
    """The page shows `step` in all three places, and its run has finished."""
    expect(page.get_by_text(re.compile(rf"^Step {step}: "))).to_be_visible()
    expect(_snapshot_box(page)).to_have_value(re.compile(rf"^Step {step} "))
    wait_idle(page)
    assert _ticked_step(page) == str(step)


def test_history_keeps_one_layout_and_one_selection(page: Page, app_server):
    page.set_viewport_size(WIDE)
    open_app(page, app_server.url)
    for text in (f"Layout {tag()}", "second turn", "third turn"):
        send(page, text)
    nav_to(page, "History")
    expect(_table(page)).to_be_visible()
    page.evaluate(WATCH_WIDTHS)
    _shown(page, 8)  # the latest step, ticked and shown, before any click

    _snapshot_box(page).click()
    page.get_by_role("option", name=re.compile(r"^Step 4 ")).click()
    _shown(page, 4)
    _tick_row(page, 2)
    _shown(page, 2)
    page.get_by_role("button", name="Fork from here").click()
    expect(messages(page)).to_have_count(2)
    wait_idle(page)
    nav_to(page, "History")
    expect(page.get_by_text("2 messages on this branch")).to_be_visible()
    page.evaluate(WATCH_WIDTHS)
    page.get_by_test_id("stSelectbox").filter(has_text="Branch").click()
    page.get_by_role("option", name=re.compile("original")).click()
    expect(page.get_by_text("6 messages on this branch")).to_be_visible()  # the original's own count
    _shown(page, 2)  # the step this branch was left at
    _tick_row(page, 3)
    _shown(page, 3)
    save_screenshot(page, "polish-history-wide")
    widths = page.evaluate("[...window.__widths]")
    assert len(widths) == 1 and widths[0] > 900, f"the History column changed width: {widths}"


def _widths_seen(page: Page) -> list[int]:
    return sorted(page.evaluate("[...window.__widths]"))


def _pick_step(page: Page, step: int) -> None:
    _snapshot_box(page).click()
    page.get_by_role("option", name=re.compile(rf"^Step {step} ")).click()
    expect(page.get_by_text(re.compile(rf"^Step {step}: "))).to_be_visible()
    wait_idle(page)


def test_history_keeps_one_layout_through_every_kind_of_click(page: Page, app_server):
    """Widths only (transient ones too, every frame), so this holds whatever the selection does."""
    page.set_viewport_size(WIDE)
    open_app(page, app_server.url)
    for text in (f"Width {tag()}", "second turn"):
        send(page, text)
    nav_to(page, "History")
    expect(_table(page)).to_be_visible()
    wait_idle(page)
    page.evaluate(WATCH_WIDTHS)
    _pick_step(page, 2)
    _tick_row(page, 1)
    expect(page.get_by_text(re.compile(r"^Step 1: "))).to_be_visible()
    wait_idle(page)
    _pick_step(page, 2)
    widths = _widths_seen(page)
    assert len(widths) == 1 and widths[0] > 900, f"History changed width on a click: {widths}"

    page.get_by_role("button", name="Fork from here").click()
    expect(messages(page)).to_have_count(2)
    wait_idle(page)
    nav_to(page, "History")
    expect(_table(page)).to_be_visible()
    wait_idle(page)
    page.evaluate(WATCH_WIDTHS)
    page.get_by_test_id("stSelectbox").filter(has_text="Branch").click()
    page.get_by_role("option", name=re.compile("original")).click()
    expect(page.get_by_text("6 snapshots")).to_be_visible()
    wait_idle(page)
    _pick_step(page, 4)
    assert _widths_seen(page) == widths, "History changed width when the branch changed"


# ---- small screens -------------------------------------------------------------------------------
def _sidebar_open(page: Page) -> bool:
    box = sidebar(page).bounding_box()
    return box is not None and box["width"] > 0 and box["x"] >= 0


def _closes(page: Page, timeout: float = 5.0) -> bool:
    """The sidebar is (or, once its slide-out animation ends, becomes) closed within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while _sidebar_open(page):
        if time.monotonic() > deadline:
            return False
        page.wait_for_timeout(100)
    return True


def test_a_narrow_screen_starts_with_the_sidebar_closed_and_closes_it_after_a_choice(page: Page, app_server):
    page.set_viewport_size(NARROW)
    open_app(page, app_server.url)
    assert not _sidebar_open(page), "the sidebar covers the chat at 400 px"
    send(page, f"Small screen {tag()}")
    first = conversation_id(page)
    page.get_by_test_id("stExpandSidebarButton").click()
    expect(sidebar(page).get_by_role("button", name="New chat")).to_be_in_viewport()
    sidebar(page).get_by_role("button", name="New chat").click()
    expect(page.get_by_test_id("stExpandSidebarButton")).to_be_visible()  # closed again
    wait_idle(page)
    assert conversation_id(page) != first and _closes(page)

    page.get_by_test_id("stExpandSidebarButton").click()
    conversation_button(page, first).get_by_role("button").first.click()
    expect(messages(page)).to_have_count(2)
    wait_idle(page)
    assert conversation_id(page) == first
    expect(page.get_by_test_id("stExpandSidebarButton")).to_be_visible()
    assert _closes(page), "the sidebar stayed open over the chat after choosing a conversation"
    save_screenshot(page, "polish-narrow-after-choice")


def test_a_wide_screen_keeps_the_sidebar_open_after_a_choice(page: Page, app_server):
    page.set_viewport_size(WIDE)
    open_app(page, app_server.url)
    send(page, f"Wide screen {tag()}")
    first = conversation_id(page)
    sidebar(page).get_by_role("button", name="New chat").click()
    wait_idle(page)
    conversation_button(page, first).get_by_role("button").first.click()
    expect(messages(page)).to_have_count(2)
    wait_idle(page)
    page.wait_for_timeout(300)  # the closing script, were it wrongly run, acts at once
    assert _sidebar_open(page)


# ---- light and dark ------------------------------------------------------------------------------
def _luminance(css_color: str) -> float:
    """Relative luminance (WCAG) of an `rgb(...)`/`rgba(...)` colour."""
    red, green, blue = (int(v) / 255 for v in re.findall(r"[\d.]+", css_color)[:3])

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(red) + 0.7152 * linear(green) + 0.0722 * linear(blue)


def _contrast(one: str, other: str) -> float:
    high, low = sorted((_luminance(one), _luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _style(locator: Locator, prop: str) -> str:
    return locator.evaluate(f"e => getComputedStyle(e).{prop}")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_theme_follows_the_system_and_reads_well(new_context, app_server, scheme):
    page = new_context(color_scheme=scheme).new_page()
    page.set_viewport_size(WIDE)
    open_app(page, app_server.url)
    send(page, f"Theme {scheme} {tag()}")
    app = page.get_by_test_id("stApp")
    background, text = _style(app, "backgroundColor"), _style(app, "color")
    assert (_luminance(background) < 0.05) == (scheme == "dark"), f"{scheme} system, page background {background}"
    assert _contrast(background, text) >= 7, (background, text)
    current = sidebar(page).locator(".st-key-conv_row_current")
    bar, side = _style(current, "borderLeftColor"), _style(sidebar(page), "backgroundColor")
    assert _contrast(bar, side) >= 3, f"the current conversation's bar {bar} on {side}"

    nav_to(page, "History")
    edge = page.get_by_test_id("stGraphVizChart").locator(".edge path").first
    expect(edge).to_be_attached()
    wait_idle(page)
    assert _contrast(_style(edge, "stroke"), background) >= 4.5, "the graph's lines fade into the background"
    save_screenshot(page, f"polish-history-{scheme}")


# ---- the listening address -----------------------------------------------------------------------
def _outside_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


class DefaultAddressServer(StreamlitServer):
    """`streamlit run` as `make run` starts it, without naming an address: the project's config decides."""

    def spawn(self) -> "DefaultAddressServer":
        cmd = [sys.executable, "-m", "streamlit", "run", self.script, "--server.headless", "true",
               "--server.port", str(self.port), "--server.fileWatcherType", "none"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self


def test_the_app_listens_on_loopback_only(streamlit_factory):
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback address to try")
    template = streamlit_factory("address", start=False)
    server = DefaultAddressServer("address-default", template.workdir, template.env)
    streamlit_factory.servers.append(server)
    server.start()
    assert "Network URL" not in server.log_tail()
    with pytest.raises(OSError):
        socket.create_connection((outside, server.port), timeout=2).close()
    make = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "--server.address 127.0.0.1" in make.stdout


# ---- rename and delete ---------------------------------------------------------------------------
def test_the_row_menu_closes_behind_the_dialog_and_delete_looks_destructive(page: Page, app_server):
    page.set_viewport_size(WIDE)
    open_app(page, app_server.url)
    send(page, f"Menu {tag()}")
    key = conversation_id(page)
    current = sidebar(page).locator(".st-key-conv_row_current:not([data-retained])")
    current.get_by_role("button", name=re.compile("more_vert")).first.click()
    menu = page.get_by_test_id("stPopoverBody")
    expect(menu.get_by_role("button", name="Delete")).to_be_visible()
    menu.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("cannot be undone")).to_be_visible()
    wait_idle(page)
    expect(page.get_by_test_id("stPopoverBody")).to_be_hidden()  # the menu is not left open behind it
    confirm = dialog.locator(".st-key-delete_confirm button")
    red, green, blue = (int(v) for v in re.findall(r"\d+", _style(confirm, "backgroundColor"))[:3])
    assert red > 150 and green < 80 and blue < 80, "Delete's confirm button is not red"
    save_screenshot(page, "polish-delete-dialog")
    dialog.get_by_role("button", name="Cancel").click()
    wait_idle(page)
    assert conversation_id(page) == key
