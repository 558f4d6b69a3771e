"""bench/portal_load.py's clients against the real portal (uvicorn on loopback, the session's PostgreSQL
and Orthanc): the login's cookies and CSRF token, a whole job labelled with no error, and a refused
request counted as an error (the framing itself: tests/unit/test_portal_load_client.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from labeling.orthanc.local_stack import free_port
from tests.aio import run_isolated
from tests.integration.portal_fixtures import *  # noqa: F401,F403 - fixtures
from tests.integration.portal_fixtures import PASSWORD

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("portal_load", ROOT / "bench" / "portal_load.py")
load = sys.modules["portal_load"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up there
_spec.loader.exec_module(load)


@pytest.fixture(scope="module")
def portal_url(portal_app):
    server = uvicorn.Server(uvicorn.Config(portal_app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize("client_name", ["lean", "httpx"])
def test_two_annotators_label_a_whole_job_without_an_error(portal_url, make_user, make_job, upload_instances,
                                                           client_name):
    job_id, _ = make_job(3, k=2, ids=upload_instances(3, size=64))  # the bench's ROI reaches (40, 40)
    names = [make_user("annotator").name for _ in range(2)]

    async def scenario():
        client_class = load.CLIENTS[client_name]
        clients = [await load.login(portal_url, name, client_class, PASSWORD) for name in names]
        rec, cycles = load.Recorder(), [0]
        await asyncio.gather(*(load.annotator(client, [job_id], 0, time.perf_counter() + 60, rec, cycles, 0.0)
                               for client in clients))
        # A wrong CSRF token: the portal refuses (403) and the bench counts it.
        clients[0].csrf = "not-the-token"
        refused = await rec.call("POST next", clients[0].request("POST", f"/api/jobs/{job_id}/next", csrf=True),
                                 load.check_task)
        for client in clients:
            await client.aclose()
        return rec, cycles[0], refused, clients

    rec, answers, refused, clients = run_isolated(scenario(), 120)
    assert answers == 6  # 3 items × 2 annotators, each answer stored (checked per reply)
    assert {name: len(times) for name, times in rec.times.items()} == {
        "POST next": 3 * 2 + 2 * 2 + 1, "GET image": 6, "POST answer": 6}  # then done, twice each
    assert dict(rec.errors) == {"POST next": 1} and rec.samples["POST next"].startswith("403")
    assert refused is None
    if client_name == "lean":
        assert [client.connections for client in clients] == [1, 1]  # login and labelling on one connection
