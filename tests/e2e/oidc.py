"""Helpers for the sign-in browser tests: a real OpenID Connect provider (oidc-provider-mock, on
loopback) and `streamlit run` with BURROW_AUTH=oidc and an `[auth]` secrets file of its own.

Everything uses `localhost`, never 127.0.0.1: Streamlit's auth cookie belongs to the host name the
browser used, and the provider redirects back to exactly the `redirect_uri` of the secrets file.
The secrets file lives in the server's own folder (`secrets.files`), never in the repository's
.streamlit/, so other servers started from the same tree are not switched to sign-in.
"""
from __future__ import annotations

from pathlib import Path

from oidc_provider_mock import User as ProviderUser
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import ServerFactory, StreamlitServer
from tests.e2e.pages import sidebar, wait_idle

SIGN_IN_TITLE = "Sign in to Burrow"
NOT_FOUND = "This conversation does not exist"


def provider_users() -> list[ProviderUser]:
    """Alice has a name (the sidebar shows it); Bob only an e-mail (the sidebar shows that)."""
    return [ProviderUser(sub="alice-0001", claims={"email": "alice@example.com", "name": "Alice Liddell"}),
            ProviderUser(sub="bob-0002", claims={"email": "bob@example.com"})]


def local_url(server: StreamlitServer, path: str = "") -> str:
    """The server's address as the browser must use it (see the module docstring)."""
    return f"http://localhost:{server.port}/{path.lstrip('/')}"


def write_auth_secrets(server: StreamlitServer, provider_port: int) -> Path:
    """The `[auth]` section st.login reads; any client id and secret do (the provider registers none)."""
    path = server.workdir / "secrets.toml"
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "{local_url(server, "oauth2callback")}"\n'
        'cookie_secret = "burrow-e2e-cookie-secret-0123456789"\n'
        'client_id = "burrow-e2e"\n'
        'client_secret = "burrow-e2e-secret"\n'
        f'server_metadata_url = "http://localhost:{provider_port}/.well-known/openid-configuration"\n')
    return path


def oidc_server(factory: ServerFactory, provider_port: int, name: str = "oidc", **env: str) -> StreamlitServer:
    """A started app server with sign-in through the provider on `provider_port`."""
    server = factory(name, start=False, BURROW_AUTH="oidc", **env)
    server.env["STREAMLIT_SECRETS_FILES"] = str(write_auth_secrets(server, provider_port))
    return server.start()


def open_signed_out(page: Page, server: StreamlitServer, path: str = "") -> None:
    """Opens the app and waits for its sign-in page."""
    page.goto(local_url(server, path))
    wait_idle(page)
    expect(page.get_by_role("heading", name=SIGN_IN_TITLE)).to_be_visible()


def sign_in(page: Page, server: StreamlitServer, subject: str) -> None:
    """The whole round trip: Burrow's Sign in, the provider's form, back in Burrow's Chat page."""
    open_signed_out(page, server)
    page.get_by_role("button", name="Sign in").click()
    form = page.locator("input[name=sub]")
    expect(form).to_be_visible()
    form.fill(subject)
    page.get_by_role("button", name="Authorize").click()
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_visible()
    expect(sidebar(page)).to_contain_text("Signed in as")
    wait_idle(page)


def signed_in_context(browser: Browser, server: StreamlitServer, subject: str, **options) -> BrowserContext:
    """A new browser context (its own cookies: another person) that has signed in as `subject`."""
    context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
    sign_in(context.new_page(), server, subject)
    return context


def sign_out(page: Page) -> None:
    """Sign out in the sidebar; the provider asks to end its session too, then sends us back."""
    sidebar(page).get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click()
    wait_idle(page)
