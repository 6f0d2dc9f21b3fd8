"""Export and import over HTTP (server/routes/transfer.py) on real uvicorn, SQLite and PostgreSQL.

The router is registered here on top of create_app() until server/app.py includes it."""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.app import create_app
from server.routes import transfer
from tests.api.conftest import ApiServer
from tests.faults.conftest import service_settings
from tests.support.net import free_port

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture
def api(db_url, llm_server) -> Iterator[ApiServer]:
    app = create_app(service_settings(db_url, llm_server.base_url))
    if not any(getattr(route, "path", "") == "/api/v1/import" for route in app.routes):
        app.include_router(transfer.router)
    server = ApiServer(app, free_port()).start()
    yield server
    server.stop()


def test_import_then_export_in_every_format(api):
    body = (DATA / "chatgpt_conversations.json").read_bytes()
    answer = httpx.post(f"{api.url}/api/v1/import", content=body, params={"name": "conversations.json"},
                        headers={"Content-Type": "application/json"}, timeout=30)
    assert answer.status_code == 201, answer.text
    first, second = answer.json()["conversations"]
    exported = httpx.get(f"{api.url}/api/v1/conversations/{first}/export", timeout=30)
    assert exported.status_code == 200 and exported.headers["content-type"] == "application/json"
    assert exported.headers["content-disposition"] == f'attachment; filename="{first}.json"'
    document = exported.json()
    assert document["format"] == "burrow.conversation" and len(document["branches"]) == 2
    markdown = httpx.get(f"{api.url}/api/v1/conversations/{second}/export", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown") and markdown.text.startswith("# Moles\n")
    messages = httpx.get(f"{api.url}/api/v1/conversations/{second}/export", params={"format": "openai"}).json()
    assert messages == [{"role": "user", "content": "[attachment not imported]\nWhat dug this?"},
                        {"role": "assistant", "content": "A mole."}]
    # the Burrow JSON goes back in as a new conversation (the id is taken)
    again = httpx.post(f"{api.url}/api/v1/import", content=exported.content, timeout=30)
    assert again.status_code == 201 and again.json()["conversations"][0] not in (first, second)


def test_a_bad_file_is_a_422_naming_the_problem_and_imports_nothing(api):
    answer = httpx.post(f"{api.url}/api/v1/import", content=(DATA / "chatgpt_orphan.json").read_bytes(),
                        params={"name": "conversations.json"})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"] == ("conversations.json: item 2: node abc has no parent in the mapping "
                                       "(it names 'gone')")
    assert httpx.get(f"{api.url}/api/v1/conversations").json()["items"] == []


def test_unknown_conversation_or_format(api):
    assert httpx.get(f"{api.url}/api/v1/conversations/nope/export").status_code == 404
    assert httpx.get(f"{api.url}/api/v1/conversations/bad%20id/export").status_code == 404
    body = json.dumps([{"role": "user", "content": "hi"}]).encode()
    (cid,) = httpx.post(f"{api.url}/api/v1/import", content=body).json()["conversations"]
    assert httpx.get(f"{api.url}/api/v1/conversations/{cid}/export", params={"format": "xml"}).status_code == 422
    unknown_branch = httpx.get(f"{api.url}/api/v1/conversations/{cid}/export",
                               params={"format": "markdown", "branch": "zzz"})
    assert unknown_branch.status_code == 422 and "does not exist" in unknown_branch.json()["detail"]


def test_every_conversation_as_one_archive(api):
    ids = httpx.post(f"{api.url}/api/v1/import", content=(DATA / "chatgpt_conversations.json").read_bytes(),
                     timeout=30).json()["conversations"]
    answer = httpx.get(f"{api.url}/api/v1/export", timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        assert sorted(archive.namelist()) == sorted(f"{cid}.json" for cid in ids)
    again = httpx.post(f"{api.url}/api/v1/import", content=answer.content, timeout=30)
    assert again.status_code == 201 and len(again.json()["conversations"]) == 2
