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
from ui import account  # noqa: E402
from ui.services import get_service, storage_error  # noqa: E402

PAGE_ICON = Path(__file__).with_name("static") / "burrow.svg"
STYLE = Path(__file__).with_name("style.css")

# The icon is a local file, served by this server: an emoji or :material: icon (the page's or a
# navigation entry's) makes the browser fetch an image from fonts.gstatic.com. It is set before
# st.navigation, or the browser takes the entry's icon instead. "auto" starts the sidebar
# collapsed on narrow screens, where it would cover the page.
st.set_page_config(page_title="Burrow", page_icon=PAGE_ICON, initial_sidebar_state="auto")
# The page scripts live in views/, not pages/: a pages/ folder next to the main script switches
# Streamlit to its old multipage mode, which runs a page without this file around it.
# Signing in comes first: a signed-out visitor gets the sign-in page, and no page of Burrow's runs.
service = get_service()
pages = [
    st.Page("views/chat.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("views/history.py", title="History", icon=":material/history:", url_path="history"),
]
if service.settings.auth != "none":  # without sign-in the API needs no token
    pages.append(st.Page("views/tokens.py", title="API tokens", icon=":material/key:", url_path="tokens"))
page = st.navigation(pages)
# The layout is set here, once per run, before the page draws: a page that changed it itself
# (after this file had set another) left the browser at either width, depending on the run.
st.set_page_config(layout="wide" if page.url_path == "history" else "centered")
st.html(STYLE)  # every page's, the API tokens page too (it has no conversations sidebar)
try:
    page.run()
except StorageError as exc:  # the database went away after start: explain, never a traceback
    storage_error(exc)  # which logs it, once, with its traceback
account.render(service.user, service.settings)
