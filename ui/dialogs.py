"""The button row every Burrow dialog ends with, so rename, delete and revoke look and behave alike."""
from __future__ import annotations

import streamlit as st


def confirm_or_cancel(label: str, key: str, *, icon: str | None = None) -> bool | None:
    """Draw [label] [Cancel] side by side: True when label was clicked, False on Cancel, None before either.
    A destructive confirm is styled red by its key in ui/style.css."""
    confirm, cancel = st.columns(2)
    if confirm.button(label, key=key, type="primary", icon=icon, width="stretch"):
        return True
    if cancel.button("Cancel", key=f"{key}_cancel", width="stretch"):
        return False
    return None
