"""An admin's read-only view of everyone's conversations (BURROW_ADMINS), behind a sign-in proxy: the
admin's own list is theirs alone until they switch on "Everyone's conversations"; then another user's
conversation is listed with its owner, opens with a read-only notice, and offers nothing to change."""
from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.conftest import ServerFactory
from tests.e2e.oidc import local_url
from tests.e2e.pages import (chat_input, conversation_button, conversation_id, messages, save_screenshot, send, sidebar,
                             wait_idle)

pytestmark = pytest.mark.e2e

DANA_TEXT = "Dana's budget for the offsite"


def test_an_admin_reads_another_users_conversation_and_can_change_nothing(browser: Browser,
                                                                          streamlit_factory: ServerFactory):
    server = streamlit_factory("admin", BURROW_AUTH="proxy", BURROW_ADMINS="root@example.com")
    dana = browser.new_page(extra_http_headers={"X-Forwarded-Email": "dana@example.com"})
    root = browser.new_page(extra_http_headers={"X-Forwarded-Email": "root@example.com"})
    try:
        dana.goto(local_url(server))
        wait_idle(dana)
        send(dana, DANA_TEXT)
        key = conversation_id(dana)
        root.goto(local_url(server))
        wait_idle(root)
        expect(sidebar(root)).to_contain_text("admin")
        expect(conversation_button(root, key)).to_have_count(0)  # their own list first: empty
        sidebar(root).get_by_text("Everyone's conversations").click()
        wait_idle(root)
        row = conversation_button(root, key)
        expect(row).to_contain_text("dana@example.com")
        expect(sidebar(root).locator(f".st-key-conv_menu_{key}")).to_have_count(0)  # no pin, rename, delete
        row.click()
        wait_idle(root)
        expect(root.get_by_text("as an admin you can read it, not change it")).to_be_visible()
        expect(messages(root).first).to_contain_text(DANA_TEXT)
        expect(chat_input(root)).to_be_disabled()
        expect(root.get_by_role("button", name="Edit")).to_have_count(0)
        expect(root.get_by_role("button", name="Regenerate")).to_have_count(0)
        save_screenshot(root, "admin-read-only")
    finally:
        dana.context.close()
        root.context.close()
