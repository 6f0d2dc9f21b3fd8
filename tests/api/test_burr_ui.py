"""Burr's own UI at /burr on the API server (server/burr_ui.py): a turn sent through the API is a run
Burr's UI lists, read from Burrow's tracker folder; with sign-in on it is not served at all."""
from __future__ import annotations

import httpx


def test_burr_ui_lists_the_run_of_a_turn_sent_through_the_api(start_api, tmp_path):
    api = start_api(BURROW_TRACKER_PROJECT="burrow-api-test", BURROW_TRACKER_DIR=str(tmp_path / "tracker"))
    with httpx.Client(base_url=api.url, timeout=20) as http:
        cid = http.post("/api/v1/conversations", json={}).json()["id"]
        sent = http.post(f"/api/v1/conversations/{cid}/messages", json={"content": "seen by Burr"}).json()
        assert http.get("/burr/ready").json() == {"ready": True}
        projects = {p["name"] for p in http.get("/burr/api/v0/projects").json()}
        assert "burrow-api-test" in projects
        apps = http.get(f"/burr/api/v0/burrow-api-test/{cid}/apps").json()["applications"]
        assert sent["branch"] in {a["app_id"] for a in apps}
        page = http.get("/burr/")
        assert page.status_code == 200 and "<html" in page.text.lower()  # Burr's own React app


def test_with_sign_in_burr_ui_is_not_served(start_api, tmp_path):
    api = start_api(BURROW_AUTH="proxy", BURROW_TRACKER_PROJECT="burrow", BURROW_TRACKER_DIR=str(tmp_path))
    assert httpx.get(f"{api.url}/burr/api/v0/projects", timeout=10).status_code == 404
    assert httpx.get(f"{api.url}/burr/", timeout=10).status_code == 404
