"""History's export buttons and importer (ui/transfer_view.py) in Streamlit's AppTest, on a SQLite file."""
from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.chat import ChatService
from core.llm import OfflineModel
from core.settings import Settings

APP = "../../ui/Home.py"  # relative to this folder
DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture
def service(monkeypatch, tmp_path) -> Iterator[ChatService]:
    """The app's database (set in the environment the app reads), with one conversation in it."""
    url = f"sqlite:///{tmp_path / 'burrow.db'}"
    monkeypatch.setenv("BURROW_DATABASE_URL", url)
    monkeypatch.setenv("BURROW_TRACKER_PROJECT", "off")
    st.cache_resource.clear()
    made = ChatService.from_settings(Settings(database_url=url, tracker_project=None), model=OfflineModel(0))
    run = made.send("c1", "hello")
    assert run.wait(10)
    yield made
    made.close()
    st.cache_resource.clear()


def history(partition_key: str | None = "c1") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    if partition_key:
        at.query_params["c"] = partition_key
    at.switch_page("views/history.py")
    at.run()
    assert not at.exception, at.exception
    return at


def import_button(at: AppTest):  # noqa: ANN201 - an AppTest button
    return next(b for b in at.button if b.label == "Import")


def test_history_offers_the_three_downloads_and_all_conversations(service):
    at = history()
    assert [b.label for b in at.get("download_button")] == ["JSON", "Markdown", "OpenAI",
                                                             "All my conversations (.zip)"]


def test_the_archive_download_holds_every_conversation_and_imports_back(service, tmp_path):
    from ui.transfer_view import _archive

    assert service.send("c2", "second").wait(10)
    archive = tmp_path / "all.zip"
    archive.write_bytes(_archive(service))
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == ["c1.json", "c2.json"]
    assert len(service.import_file(str(archive))) == 2 and service.count_conversations() == 4


def test_importing_a_chatgpt_export_lists_the_new_conversations(service):
    at = history()
    at.file_uploader[0].set_value(("conversations.json", (DATA / "chatgpt_conversations.json").read_bytes(),
                                   "application/json")).run()
    import_button(at).click().run()
    assert not at.exception, at.exception
    assert at.success[0].value == "Imported 2 conversations."
    assert service.count_conversations() == 3
    assert {link.label for link in at.get("page_link")} >= {"Rabbits", "Moles"}


def test_a_bad_file_shows_the_one_message_and_imports_nothing(service):
    at = history()
    at.file_uploader[0].set_value(("conversations.json", (DATA / "chatgpt_orphan.json").read_bytes(),
                                   "application/json")).run()
    import_button(at).click().run()
    assert [e.value for e in at.error] == [
        "conversations.json: item 2: node abc has no parent in the mapping (it names 'gone')"]
    assert service.count_conversations() == 1


def test_an_empty_install_can_import(service):
    service.delete("c1")
    at = history(None)
    assert len(at.file_uploader) == 1 and not at.get("download_button")
