"""Export and import on the History page: download buttons for the shown branch's conversation and for
all of the user's, and an uploader for any file `burrow import` reads. Facade calls only (ChatService.export_text, import_file)."""
from __future__ import annotations

import logging
import tempfile
from functools import partial
from pathlib import Path

import streamlit as st

from core.chat import ChatService, InputError, StorageError
from ui import nav

log = logging.getLogger(__name__)
DOWNLOADS = (("json", "JSON", ".json", "application/json", "Every branch, snapshot and rating (Burrow JSON)"),
             ("markdown", "Markdown", ".md", "text/markdown", "This branch, readable"),
             ("openai", "OpenAI", ".openai.json", "application/json", "This branch as an OpenAI messages list"))


def render(service: ChatService, partition_key: str, app_id: str) -> None:
    """The download buttons (the file is made only when one is clicked) and the importer, in one expander."""
    with st.expander("Export and import", icon=":material/swap_vert:"):
        columns = st.columns(len(DOWNLOADS))
        for column, (fmt, label, suffix, mime, help_text) in zip(columns, DOWNLOADS):
            column.download_button(label, data=partial(service.export_text, partition_key, fmt, app_id),
                                   file_name=f"{partition_key}{suffix}", mime=mime, help=help_text,
                                   icon=":material/download:", on_click="ignore", key=f"export_{fmt}")
        archive_button(service)
        importer(service)


def archive_button(service: ChatService) -> None:
    """Every conversation of the user's in one .zip of Burrow JSON (what `burrow export --all` writes),
    made only when clicked."""
    st.download_button("All my conversations (.zip)", data=partial(_archive, service), file_name="burrow-export.zip",
                       mime="application/zip", icon=":material/folder_zip:", on_click="ignore", key="export_all",
                       help="Every conversation of yours, each with all its branches (Burrow JSON files)")


def _archive(service: ChatService) -> bytes:
    """The archive's bytes: written to a temporary file as it goes, then handed to the browser."""
    with tempfile.TemporaryDirectory(prefix="burrow-export-") as folder:
        path = Path(folder) / "export.zip"
        service.export_archive(path)
        return path.read_bytes()


def importer(service: ChatService) -> None:
    """Import a file; a bad one shows the one message naming what is wrong, and nothing is imported."""
    uploaded = st.file_uploader("Import a conversation", type=["json", "zip"], key="import_file",
                                help="Burrow JSON, a .zip of them, an OpenAI messages list, or ChatGPT's "
                                     "conversations.json")
    if uploaded is None or not st.button("Import", icon=":material/upload:", key="import_button"):
        return
    try:
        ids = service.import_file(uploaded, uploaded.name)
    except InputError as exc:
        log.info("import refused: %s", exc)
        st.error(str(exc), icon=":material/error:")
        return
    except StorageError as exc:
        log.warning("import failed: %s", exc, exc_info=True)
        st.error(str(exc), icon=":material/database:")
        return
    st.success(f"Imported {len(ids)} conversation{'s' if len(ids) != 1 else ''}.", icon=":material/check:")
    for partition_key in ids[:20]:
        summary = service.conversation(partition_key)
        st.page_link(nav.HISTORY_PAGE, label=summary.title if summary else partition_key,
                     query_params={"c": partition_key}, icon=":material/history:")
