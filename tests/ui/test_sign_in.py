"""Sign-in modes in the app (AppTest): a signed-out visitor sees a sign-in page and none of anyone's
conversations; BURROW_AUTH=oidc without [auth] is a clear settings error, not a half-open app."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from tests.ui.apptest_helpers import sidebar_titles


def page_text(at: AppTest) -> str:
    """Everything the page and the sidebar say, as text."""
    parts = [getattr(e, "value", "") for kind in ("title", "markdown", "caption", "error", "text") for e in getattr(at, kind)]
    parts += [b.label for b in at.button] + sidebar_titles(at)
    return "\n".join(str(p) for p in parts)


def test_behind_a_proxy_a_request_without_its_header_sees_no_conversation(app, seed, monkeypatch):
    seed("A private question about payroll")
    monkeypatch.setenv("BURROW_AUTH", "proxy")
    app.run()
    text = page_text(app)
    assert "Not signed in" in text and "X-Forwarded-Email" in text
    assert "payroll" not in text and not app.chat_input and not app.exception


def test_oidc_without_an_auth_section_is_a_settings_error_naming_it(app, seed, monkeypatch):
    seed("Someone's secret plans")
    monkeypatch.setenv("BURROW_AUTH", "oidc")
    app.run()
    text = page_text(app)
    assert "settings are not valid" in text and "[auth]" in text and "secret plans" not in text
    assert not app.chat_input and not app.exception


def test_without_sign_in_there_is_no_account_block_and_no_tokens_page(app, seed):
    seed("My own chat")
    app.run()
    assert "Signed in as" not in page_text(app) and not app.exception
