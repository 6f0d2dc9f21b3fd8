"""Burrow's entry point (`streamlit run ui/Home.py`): page config and navigation, nothing else.

`streamlit run` puts only ui/ on sys.path, so the repository root is added first: `core` and
`ui` then import the same way here, under pytest and when the project is pip-installed.
"""
import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import streamlit as st  # noqa: E402

from core.errors import StorageError  # noqa: E402
from ui.services import storage_error  # noqa: E402

st.set_page_config(page_title="Burrow", page_icon=":material/forum:", layout="centered",
                   initial_sidebar_state="expanded")
# The page scripts live in views/, not pages/: a pages/ folder next to the main script switches
# Streamlit to its old multipage mode, which runs a page without this file around it.
page = st.navigation([
    st.Page("views/chat.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("views/history.py", title="History", icon=":material/history:", url_path="history"),
])
try:
    page.run()
except StorageError as exc:  # the database went away after start: explain, never a traceback
    storage_error(exc)  # which logs it, once, with its traceback
