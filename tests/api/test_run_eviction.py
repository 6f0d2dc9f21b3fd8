"""Finished runs are forgotten after BURROW_RUN_KEEP_SECONDS: re-attaching works within that time
(the whole run replayed), afterwards it is a 404; the run manager and the relay's followed runs
(another process's runs) both let them go, so a long-lived server does not keep every reply."""
from __future__ import annotations

import time

import httpx
import pytest

from core.relay import Relay
from core.runs import EventKind, Run
from tests.api.conftest import stream_events

BASE = "/api/v1/conversations"


def test_a_finished_run_is_re_attachable_for_the_keep_time_then_gone(start_api, llm_server):
    llm_server.reply = "short reply"
    api = start_api(BURROW_RUN_KEEP_SECONDS="1.5")
    with httpx.Client(base_url=api.url, timeout=10) as http:
        cid = http.post(BASE).json()["id"]
        first = stream_events(http, "POST", f"{BASE}/{cid}/messages", json={"content": "hi"})
        run_id, ended = first[0]["data"]["run_id"], time.monotonic()
        again = stream_events(http, "GET", f"/api/v1/runs/{run_id}/events")  # within the keep time
        assert [(e["id"], e["event"]) for e in again] == [(e["id"], e["event"]) for e in first]
        deadline = time.monotonic() + 10
        while http.get(f"/api/v1/runs/{run_id}/events").status_code != 404:
            assert time.monotonic() < deadline, "the finished run was never forgotten"
            time.sleep(0.2)
        assert time.monotonic() - ended >= 1.0  # not before its keep time (1.5 s after it ended)
        assert api.service.runs.get(run_id) is None and api.service.runs._finished == {}


@pytest.mark.postgres
def test_the_relay_forgets_a_followed_run_after_the_keep_time(pg_url):
    owner, follower = Relay.for_url(pg_url), Relay.for_url(pg_url, keep_seconds=1.0)
    try:
        run = Run("conversation-1", "branch-1")
        owner.serve({run.id: run}.get)
        run.listeners.append(owner.publish)
        run.publish(EventKind.STARTED)
        followed = follower.follow(run.id)
        assert followed is not None and follower.followed(run.id) is followed
        run.finish("answered")
        assert followed.wait(5) and followed.outcome == "answered"
        assert follower.followed(run.id) is followed  # just ended: still there for a re-attach
        deadline = time.monotonic() + 10
        while follower.followed(run.id) is not None:
            assert time.monotonic() < deadline, "the followed run was never forgotten"
            time.sleep(0.1)
    finally:
        owner.close()
        follower.close()
