"""Sign-in with a real OpenID Connect provider (BURROW_AUTH=oidc): two people in two browser contexts,
each signed in through st.login and the provider's own form, against one `streamlit run`.

What must hold: each sees only their own conversations; another person's link, History page, fork
and delete reach nothing (the same message as an unknown id, none of their text on the page); Sign
out ends on the sign-in page; behind a sign-in proxy its header names the user. A new API token is
shown once. With BURROW_E2E_SCREENSHOTS=1 the last test saves what people see of sign-in, Chat's
sidebar and API tokens, in both themes at 1400 and 400 px, under artifacts/issue14/ (git-ignored).
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from oidc_provider_mock import run_server_in_thread
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import ServerFactory, StreamlitServer
from tests.e2e.oidc import (NOT_FOUND, SIGN_IN_TITLE, local_url, oidc_server, open_signed_out, provider_users,
                            sign_out, signed_in_context)
from tests.e2e.pages import (chat_input, conversation_button, conversation_id, echo, expect_no_traceback, messages,
                             save_screenshot, send, sidebar, wait_idle)

pytestmark = pytest.mark.e2e

SHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "issue14"
ALICE_TEXT = "Alice plans the garden party with lanterns"
BOB_TEXT = "Bob drafts the quarterly tax summary"


# ---- fixtures: one provider, one server, two people, each with one conversation ---------------
@pytest.fixture(scope="module")
def provider_port() -> Iterator[int]:
    """The OpenID Connect provider, on loopback, for this module's tests."""
    with run_server_in_thread(port=0, user_claims=provider_users()) as server:
        yield server.server_port


@pytest.fixture(scope="module")
def oidc_app(streamlit_factory: ServerFactory, provider_port: int) -> StreamlitServer:
    return oidc_server(streamlit_factory, provider_port)


@pytest.fixture(scope="module")
def alice_context(browser: Browser, oidc_app: StreamlitServer) -> Iterator[BrowserContext]:
    context = signed_in_context(browser, oidc_app, "alice-0001")
    yield context
    context.close()


@pytest.fixture(scope="module")
def bob_context(browser: Browser, oidc_app: StreamlitServer) -> Iterator[BrowserContext]:
    context = signed_in_context(browser, oidc_app, "bob-0002")
    yield context
    context.close()


@pytest.fixture
def alice(alice_context: BrowserContext) -> Page:
    return alice_context.pages[0]


@pytest.fixture
def bob(bob_context: BrowserContext) -> Page:
    return bob_context.pages[0]


@pytest.fixture(scope="module")
def chats(alice_context: BrowserContext, bob_context: BrowserContext, oidc_app: StreamlitServer) -> dict[str, str]:
    """Each person's conversation id, after each sent one message of their own."""
    ids = {}
    for who, context, text in (("alice", alice_context, ALICE_TEXT), ("bob", bob_context, BOB_TEXT)):
        page = context.pages[0]
        page.goto(local_url(oidc_app))
        wait_idle(page)
        send(page, text)
        ids[who] = conversation_id(page)
    assert ids["alice"] and ids["bob"] and ids["alice"] != ids["bob"]
    return ids


def expect_none_of(page: Page, *texts: str) -> None:
    for text in texts:
        expect(page.locator("body")).not_to_contain_text(text)


# ---- tests -------------------------------------------------------------------------------------
def test_the_sidebar_names_the_signed_in_user(alice: Page, bob: Page, oidc_app: StreamlitServer):
    for page in (alice, bob):
        page.goto(local_url(oidc_app))
        wait_idle(page)
    expect(sidebar(alice)).to_contain_text("Signed in as Alice Liddell")  # the name, when the provider gives one
    expect(sidebar(bob)).to_contain_text("Signed in as bob@example.com")  # else the e-mail
    expect(sidebar(bob)).not_to_contain_text("Alice")
    expect(sidebar(alice).get_by_role("button", name="Sign out")).to_be_visible()


def test_each_person_sees_only_their_own_conversations(alice: Page, bob: Page, chats: dict[str, str],
                                                       oidc_app: StreamlitServer):
    for page in (alice, bob):
        page.reload()
        wait_idle(page)
    expect(conversation_button(alice, chats["alice"])).to_be_visible()
    expect(conversation_button(alice, chats["bob"])).to_have_count(0)
    expect(conversation_button(bob, chats["bob"])).to_be_visible()
    expect(conversation_button(bob, chats["alice"])).to_have_count(0)
    expect(sidebar(alice)).not_to_contain_text("Bob drafts")
    expect(sidebar(bob)).not_to_contain_text("Alice plans")


def test_another_persons_link_gets_the_same_message_as_an_unknown_id(bob: Page, chats: dict[str, str],
                                                                     oidc_app: StreamlitServer):
    bob.goto(local_url(oidc_app) + f"?c={uuid.uuid4().hex}")
    wait_idle(bob)
    unknown = bob.get_by_test_id("stAlert").inner_text()
    assert NOT_FOUND in unknown
    bob.goto(local_url(oidc_app) + f"?c={chats['alice']}")
    wait_idle(bob)
    expect(bob.get_by_test_id("stAlert")).to_contain_text(NOT_FOUND)
    assert bob.get_by_test_id("stAlert").inner_text() == unknown  # word for word: nothing tells them apart
    expect(messages(bob)).to_have_count(0)
    expect(chat_input(bob)).to_have_count(0)  # nothing to write into: the page stopped at the message
    expect_none_of(bob, ALICE_TEXT, echo(ALICE_TEXT), "garden party")
    expect_no_traceback(bob)


def test_history_fork_and_delete_cannot_reach_another_persons_conversation(alice: Page, bob: Page,
                                                                           chats: dict[str, str],
                                                                           oidc_app: StreamlitServer):
    bob.goto(local_url(oidc_app, "history") + f"?c={chats['alice']}")
    wait_idle(bob)
    expect(bob.get_by_test_id("stAlert")).to_contain_text(NOT_FOUND)
    expect(bob.get_by_role("button", name="Fork from here")).to_have_count(0)
    expect(bob.get_by_role("button", name="Open the latest branch")).to_have_count(0)
    expect_none_of(bob, ALICE_TEXT, "garden party")
    # No sidebar row for Alice's conversation: no Delete (or Rename, Pin) to choose from.
    expect(sidebar(bob).locator(f".st-key-conv_menu_{chats['alice']}")).to_have_count(0)
    expect(bob.locator(f".st-key-delete_{chats['alice']}")).to_have_count(0)
    # Bob's own History shows his conversation, and still nothing of Alice's.
    bob.goto(local_url(oidc_app, "history"))
    wait_idle(bob)
    expect(bob.get_by_role("button", name="Fork from here")).to_be_visible()
    expect_none_of(bob, "garden party")
    # Alice, after a reload, still has her conversation whole.
    alice.goto(local_url(oidc_app) + f"?c={chats['alice']}")
    wait_idle(alice)
    expect(messages(alice)).to_have_count(2)
    expect(messages(alice).first).to_contain_text(ALICE_TEXT)
    expect(messages(alice).last).to_contain_text(echo(ALICE_TEXT))
    expect(conversation_button(alice, chats["alice"])).to_be_visible()


def test_sign_out_returns_to_the_sign_in_page_and_shows_no_conversation(browser: Browser,
                                                                       oidc_app: StreamlitServer):
    context = signed_in_context(browser, oidc_app, "carol@example.com")  # not predefined: the provider's default claims
    try:
        page = context.pages[0]
        send(page, "Carol keeps a private diary entry")
        key = conversation_id(page)
        sign_out(page)
        expect(page.get_by_role("heading", name=SIGN_IN_TITLE)).to_be_visible()
        expect(sidebar(page)).to_have_count(0)
        expect_none_of(page, "private diary", "Signed in as")
        # Her old link now shows the sign-in page too: the session is really gone.
        page.goto(local_url(oidc_app) + f"?c={key}")
        wait_idle(page)
        expect(page.get_by_role("heading", name=SIGN_IN_TITLE)).to_be_visible()
        expect_none_of(page, "private diary")
    finally:
        context.close()


def test_with_oidc_a_proxy_header_signs_nobody_in(browser: Browser, oidc_app: StreamlitServer,
                                                   chats: dict[str, str]):
    """The trusted header counts only in proxy mode: sent to the oidc app it is ignored."""
    forger = browser.new_page(extra_http_headers={"X-Forwarded-Email": "alice@example.com"})
    try:
        open_signed_out(forger, oidc_app)
        expect_none_of(forger, ALICE_TEXT)
        expect(chat_input(forger)).to_have_count(0)
    finally:
        forger.context.close()


# ---- behind a sign-in proxy (BURROW_AUTH=proxy): the browser's requests carry the proxy's header ----
def test_behind_a_proxy_the_header_names_the_user_and_without_it_nothing_shows(browser: Browser,
                                                                               streamlit_factory: ServerFactory):
    server = streamlit_factory("proxy", BURROW_AUTH="proxy")
    dana = browser.new_page(extra_http_headers={"X-Forwarded-Email": "dana@example.com"})
    stranger = browser.new_page()
    try:
        dana.goto(local_url(server))
        wait_idle(dana)
        send(dana, "Dana's notes behind the proxy")
        expect(sidebar(dana)).to_contain_text("Signed in as dana@example.com")
        expect(sidebar(dana).get_by_role("button", name="Sign out")).to_have_count(0)  # the proxy signs out
        stranger.goto(local_url(server) + f"?c={conversation_id(dana)}")
        wait_idle(stranger)
        expect(stranger.get_by_role("heading", name="Not signed in")).to_be_visible()
        expect_none_of(stranger, "Dana's notes")
        expect(chat_input(stranger)).to_have_count(0)
    finally:
        dana.context.close()
        stranger.context.close()


# ---- what people see: sign-in and API tokens, light and dark, wide and narrow ------------------
WIDE, NARROW = {"width": 1400, "height": 900}, {"width": 400, "height": 860}
ALL_SHOTS = os.environ.get("BURROW_E2E_SCREENSHOTS", "").strip().lower() in ("1", "true", "yes")


def test_a_new_api_token_is_shown_only_once(browser: Browser, alice_context: BrowserContext,
                                            oidc_app: StreamlitServer):
    """Made on a wide screen, then again on a phone (a reload): the first token is gone by then."""
    page = browser.new_page(viewport=WIDE, storage_state=alice_context.storage_state())
    try:
        _tokens_wide_then_narrow(page, oidc_app, "light")
    finally:
        page.context.close()


def test_revoking_a_token_asks_first_and_cancel_keeps_it(browser: Browser, alice_context: BrowserContext,
                                                          oidc_app: StreamlitServer):
    page = browser.new_page(viewport=WIDE, storage_state=alice_context.storage_state())
    try:
        name = f"old CI job {uuid.uuid4().hex[:6]}"
        _new_token(page, oidc_app, name)
        row = page.locator("[class*='st-key-token_']").filter(has_text=name)
        expect(row).to_have_count(1)
        row.get_by_role("button", name="Revoke").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("Revoke this token?")
        expect(dialog).to_contain_text(name)
        # destructive, so red like Delete's (ui/style.css reaches this page too, which has no conversations sidebar)
        expect(dialog.locator(".st-key-revoke_confirm button")).to_have_css("background-color", "rgb(179, 38, 30)")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)
        expect(row).to_have_count(1)  # nothing was revoked by the first click
        row.get_by_role("button", name="Revoke").click()
        page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
        expect(row).to_have_count(0)
        page.reload()
        wait_idle(page)
        expect(page.get_by_text("API tokens").first).to_be_visible()
        expect(page.locator("body")).not_to_contain_text(name)
        expect_no_traceback(page)
    finally:
        page.context.close()


@pytest.mark.skipif(not ALL_SHOTS, reason="set BURROW_E2E_SCREENSHOTS=1 for every screenshot in artifacts/issue14/")
def test_screenshots_of_sign_in_chat_and_api_tokens_in_both_themes(browser: Browser, alice_context: BrowserContext,
                                                                   chats: dict[str, str], oidc_app: StreamlitServer):
    """For people to look at: each theme, the sign-in page (wide and narrow), Chat's sidebar, API tokens."""
    signed_in = alice_context.storage_state()
    for scheme in ("light", "dark"):
        page = browser.new_page(color_scheme=scheme, viewport=WIDE)
        try:
            open_signed_out(page, oidc_app)
            _shoot(page, f"sign-in-{scheme}-1400")
            page.set_viewport_size(NARROW)
            _shoot(page, f"sign-in-{scheme}-400")
        finally:
            page.context.close()
        page = browser.new_page(color_scheme=scheme, viewport=WIDE, storage_state=signed_in)
        try:
            page.goto(local_url(oidc_app) + f"?c={chats['alice']}")
            wait_idle(page)
            expect(chat_input(page)).to_be_visible()
            expect(sidebar(page).get_by_role("button", name="Sign out")).to_be_visible()
            _shoot(page, f"chat-{scheme}-1400")
            _tokens_wide_then_narrow(page, oidc_app, scheme)
        finally:
            page.context.close()


def _tokens_wide_then_narrow(page: Page, server: StreamlitServer, scheme: str) -> None:
    first = _new_token(page, server, f"laptop script ({scheme})")
    _shoot(page, f"tokens-{scheme}-1400")
    page.set_viewport_size(NARROW)
    second = _new_token(page, server, f"phone ({scheme})")  # a new page load: as a phone would open it
    assert second != first
    expect(page.locator("body")).not_to_contain_text(first)  # shown once: gone after the reload
    _shoot(page, f"tokens-{scheme}-400")
    expect_no_traceback(page)


def _new_token(page: Page, server: StreamlitServer, name: str) -> str:
    """Opens API tokens, makes a token named `name`, returns the token the page shows (once)."""
    page.goto(local_url(server, "tokens"))
    wait_idle(page)
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_text("Copy it now")).to_be_visible()
    expect(page.get_by_text(name, exact=True).first).to_be_visible()
    token = page.get_by_test_id("stCode").inner_text().strip()
    assert token.startswith("burrow_") and len(token) >= 30
    wait_idle(page)
    return token


def _shoot(page: Page, name: str) -> None:
    """A screenshot without the pointer resting on a button (its hover colour is not the page's)."""
    page.mouse.move(0, 0)
    save_screenshot(page, name, SHOTS)
