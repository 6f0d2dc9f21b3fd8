"""Who is using the app (BURROW_AUTH, core/users.py): the sign-in page, and the user's name and
Sign out at the foot of the sidebar. Without sign-in everyone is the local user and nothing shows.

A signed-out visitor gets the sign-in page and `st.stop()`: no page code runs, so no conversation
of anyone's is ever drawn for them, not even for a moment.
"""
from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import streamlit as st

from core.chat import ChatService
from core.settings import Settings, SettingsError
from core.users import LOCAL_USER, User, oidc_providers, oidc_user, proxy_user

ICON = Path(__file__).with_name("static") / "burrow.svg"  # served by this server, like the page icon
SIGN_IN_WIDTH = 440
_REMEMBERED = "account_remembered"  # the subject whose sign-in this browser session has recorded


def current_user(service: ChatService, settings: Settings, secrets: dict) -> User:
    """The signed-in user; draws the sign-in (or "not signed in") page and stops the run when there is none."""
    if settings.auth == "none":
        return LOCAL_USER
    if settings.auth == "proxy":
        user = proxy_user(dict(st.context.headers), settings)
        if user is None:
            _not_signed_in(settings)
    else:
        providers = oidc_providers(secrets)  # SettingsError (a startup error page) when [auth] is incomplete
        user = oidc_user(st.user.to_dict(), settings) if st.user.is_logged_in else None
        if user is None:
            _sign_in_page(providers)
    if st.session_state.get(_REMEMBERED) != user.subject:
        service.signed_in(user)
        st.session_state[_REMEMBERED] = user.subject
    return user


def render(user: User, settings: Settings) -> None:
    """The user's name and, with OpenID Connect, Sign out (a proxy signs out on its own pages)."""
    if settings.auth == "none":
        return
    # A bordered box rather than a divider: on a page with nothing else in the sidebar (API tokens) a
    # divider drew a second line under the navigation's own, with an empty band between the two.
    with st.sidebar, st.container(border=True, key="account"):
        st.caption(f":material/account_circle: Signed in as **{_plain(user.label)}**"
                   + (" · admin" if user.admin else ""))
        if settings.auth == "oidc":
            st.button("Sign out", icon=":material/logout:", on_click=st.logout, key="account_sign_out")


def _sign_in_page(providers: list[str | None]) -> NoReturn:
    """A small centred box: on a wide screen the bare title and button sat in the left half of the page."""
    with st.container(horizontal_alignment="center"), st.container(border=True, width=SIGN_IN_WIDTH,
                                                                     key="sign_in_box"):
        st.image(ICON, width=48)
        st.header("Sign in to Burrow", anchor=False)
        st.write("Your conversations are private to you. Sign in to see them.")
        for provider in providers:
            label = "Sign in" if provider is None else f"Sign in with {provider.title()}"
            st.button(label, type="primary", icon=":material/login:", key=f"sign_in_{provider or 'default'}",
                      width="stretch", on_click=st.login, args=(() if provider is None else (provider,)))
    st.stop()


def _not_signed_in(settings: Settings) -> NoReturn:
    st.title("Not signed in")
    st.write("Burrow is set up behind a sign-in proxy, and this request did not come through it signed in. "
             "Open Burrow through your organisation's sign-in page.")
    st.caption(f"(The proxy names the user in the {settings.proxy_user_header} header; it was missing.)")
    st.stop()


def _plain(text: str) -> str:
    """A name from the provider, shown as text (never Markdown)."""
    return "".join(c for c in text if c.isprintable())[:80].replace("*", "").replace("_", " ").replace("`", "")


__all__ = ["SettingsError", "current_user", "render"]
