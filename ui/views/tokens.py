"""API tokens: make one (shown once), see when each was last used, revoke (after a confirmation: a
revoked token cannot be brought back, and the programs using it stop at once). Only with sign-in on
(BURROW_AUTH=oidc or proxy); without it the HTTP API needs no token."""
from __future__ import annotations

import streamlit as st

from core.chat import ChatService
from core.errors import InputError
from ui.dialogs import confirm_or_cancel
from ui.format import escape_markdown, relative_time
from ui.services import get_service

_NEW = "tokens_new"  # the token just made: shown on this run only, never again


@st.dialog("Revoke this token?")
def _revoke_dialog(service: ChatService, token_id: str, name: str) -> None:
    st.markdown(f"Programs that use **{escape_markdown(name)}** will be refused by the API from now on. "
                "A revoked token cannot be restored; you can create a new one.")
    choice = confirm_or_cancel("Revoke", "revoke_confirm", icon=":material/delete:")
    if choice:
        service.revoke_token(token_id)
    if choice is not None:
        st.rerun()


service = get_service()
st.title("API tokens")
st.write("A token lets a program use Burrow's HTTP API as you: send it as `Authorization: Bearer <token>`, "
         "or give it to the OpenAI SDK as its API key. Anyone with the token can read and write your "
         "conversations, so keep it like a password. Burrow stores only a hash of it.")

with st.form("tokens_create", clear_on_submit=True):
    name = st.text_input("Name", placeholder="e.g. laptop script", max_chars=100)
    if st.form_submit_button("Create token", type="primary", icon=":material/key:"):
        try:
            st.session_state[_NEW] = service.create_token(name)[0]
        except InputError as exc:
            st.error(str(exc), icon=":material/error:")

if (token := st.session_state.pop(_NEW, None)) is not None:
    st.success("Your new token. Copy it now: it is not shown again.", icon=":material/check_circle:")
    st.code(token, language=None, wrap_lines=True)  # whole on a phone too, not cut off at the edge

tokens = service.tokens()
if not tokens:
    st.caption("You have no API tokens yet.")
for info in tokens:
    with st.container(horizontal=True, vertical_alignment="center", key=f"token_{info.id}"):
        used = f"last used {relative_time(info.last_used_at)}" if info.last_used_at else "never used"
        st.markdown(f"**{escape_markdown(info.name)}**  \n:small[:gray[created {relative_time(info.created_at)}"
                    f" · {used}]]", width="stretch")
        if st.button("Revoke", key=f"revoke_{info.id}", icon=":material/delete:"):
            _revoke_dialog(service, info.id, info.name)
