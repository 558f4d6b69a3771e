"""Unit tests of labeling/orthanc/client.py against a tiny scripted HTTP server (no Orthanc)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import pytest

from labeling.orthanc.connection import OrthancConnection
from labeling.orthanc.client import OrthancClient, OrthancError, UploadResult

Reply = tuple[int, dict, bytes]


class Script:
    """Replies in order per (method, path); records every request."""

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], list[Reply | Callable]] = {}
        self.requests: list[tuple[str, str, dict, bytes]] = []

    def on(self, method: str, path: str, *replies) -> None:
        self.replies.setdefault((method, path), []).extend(replies)


def json_reply(status: int, body) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.fixture()
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            script.requests.append((self.command, self.path, dict(self.headers), body))
            queue = script.replies.get((self.command, self.path), [])
            reply = queue.pop(0) if queue else json_reply(404, {"Message": "no script"})
            if reply == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, headers, payload = reply
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield script
    httpd.shutdown()
    httpd.server_close()


def client_for(script, **kwargs) -> OrthancClient:
    kwargs.setdefault("backoff", 0.001)
    return OrthancClient.from_connection(OrthancConnection(script.url, "admin", "pw1"), **kwargs)


STORED = {"ID": "a-b", "ParentSeries": "s", "ParentStudy": "st", "ParentPatient": "p", "Status": "Success",
          "Path": "/instances/a-b"}


def test_upload_sends_auth_and_parses_result(server):
    server.on("POST", "/instances", json_reply(200, STORED))
    result = client_for(server).upload(b"DICM")
    assert result == UploadResult("Success", "a-b", "s", "st", "p")
    method, path, headers, body = server.requests[0]
    assert headers["Authorization"].startswith("Basic ") and headers["Content-Type"] == "application/dicom"
    assert body == b"DICM"


def test_upload_zip_returns_one_result_per_stored_member(server):
    server.on("POST", "/instances", json_reply(200, [STORED, dict(STORED, ID="c-d", Status="AlreadyStored")]))
    results = client_for(server).upload_zip(b"PK..")
    assert [(r.instance_id, r.status) for r in results] == [("a-b", "Success"), ("c-d", "AlreadyStored")]
    assert server.requests[0][2]["Content-Type"] == "application/zip"


def test_5xx_and_dropped_connections_are_retried(server):
    server.on("POST", "/instances", json_reply(500, {"Message": "Internal error"}), "drop",
              json_reply(200, STORED))
    assert client_for(server, retries=2).upload(b"x").instance_id == "a-b"
    assert len(server.requests) == 3


def test_retries_exhausted_raise_with_orthanc_details(server):
    error = {"Details": "Cannot parse an invalid DICOM file", "HttpStatus": 503, "Message": "x",
             "OrthancStatus": 15}
    server.on("POST", "/instances", *[json_reply(503, error)] * 3)
    with pytest.raises(OrthancError) as caught:
        client_for(server, retries=2).upload(b"x")
    assert caught.value.status == 503 and caught.value.transient
    assert caught.value.message == "Cannot parse an invalid DICOM file"
    assert caught.value.details["OrthancStatus"] == 15
    assert caught.value.url.endswith("/instances")


def test_4xx_is_not_retried(server):
    server.on("POST", "/instances", json_reply(400, {"Message": "Bad file format", "Details": "empty"}))
    with pytest.raises(OrthancError) as caught:
        client_for(server, retries=5).upload(b"")
    assert caught.value.status == 400 and not caught.value.transient
    assert len(server.requests) == 1


def test_unreachable_server_is_a_transient_error():
    client = OrthancClient("http://127.0.0.1:9", "a", "b", retries=1, backoff=0.001, timeout=2)
    with pytest.raises(OrthancError) as caught:
        client.system()
    assert caught.value.status is None and caught.value.transient


def test_find_posts_the_tools_find_body(server):
    server.on("POST", "/tools/find", json_reply(200, [{"ID": "i1", "MainDicomTags": {}}]),
              json_reply(200, ["i2"]))
    client = client_for(server)
    assert client.find("Instance", {"Modality": "DX"}, limit=10, since=5)[0]["ID"] == "i1"
    body = json.loads(server.requests[0][3])
    assert body == {"Level": "Instance", "Query": {"Modality": "DX"}, "Expand": True, "Limit": 10,
                    "Since": 5, "CaseSensitive": True}
    assert client.find("Series", {}, expand=False) == [{"ID": "i2"}]
    with pytest.raises(ValueError):
        client.find("instances", {})


def test_metadata_absent_is_none_and_revision_conflicts_are_resolved(server):
    path = "/instances/i1/metadata/1024"
    server.on("GET", path, json_reply(404, {"Message": "Unknown"}),
              (200, {"ETag": '"3-abc"'}, b"old"))
    server.on("PUT", path, json_reply(409, {"Message": "A bad revision number"}), (200, {}, b""))
    client = client_for(server)
    assert client.get_metadata("instances", "i1", "1024") is None
    client.set_metadata("instances", "i1", "1024", "new")
    puts = [r for r in server.requests if r[0] == "PUT"]
    assert puts[-1][2]["If-Match"] == '"3-abc"' and puts[-1][3] == b"new"


def test_explicit_stale_revision_raises_409(server):
    server.on("PUT", "/instances/i1/metadata/1024", json_reply(409, {"Message": "A bad revision number"}))
    with pytest.raises(OrthancError) as caught:
        client_for(server).set_metadata("instances", "i1", "1024", "v", revision='"1-x"')
    assert caught.value.status == 409


def test_unauthorized_message_names_the_variables(server):
    server.on("GET", "/system", (401, {}, b""))
    with pytest.raises(OrthancError, match="ORTHANC_USERNAME/ORTHANC_PASSWORD"):
        client_for(server).system()


def test_bad_level_plural_rejected(server):
    with pytest.raises(ValueError, match="expected one of"):
        client_for(server).list_metadata("Instance", "x")


def test_orthanc_error_pickles_with_its_fields():
    """An OrthancError raised in a worker process reaches the parent whole (pickle rebuilds it from
    its arguments; the default would call OrthancError(message) and fail)."""
    import pickle

    error = OrthancError(409, "Conflict", "http://127.0.0.1:8042/instances", {"OrthancStatus": 8})
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again), again.status, again.message, again.url, again.details) == (
        OrthancError, str(error), 409, "Conflict", "http://127.0.0.1:8042/instances", {"OrthancStatus": 8})


def test_a_command_builds_its_client_from_flags_or_the_environment(tmp_path):
    import argparse

    from labeling.orthanc.connection import ConnectionError_, orthanc_client_from_args

    password = tmp_path / "pw"
    password.write_text("s3cret\n")
    args = argparse.Namespace(orthanc_url="http://127.0.0.1:8042/", username=None, password_file=password)
    client = orthanc_client_from_args(args, {"ORTHANC_USERNAME": "admin"}, pool_size=3)
    assert (client.url, client._session.auth) == ("http://127.0.0.1:8042", ("admin", "s3cret"))
    client.close()
    with pytest.raises(ConnectionError_, match="ORTHANC_USERNAME"):
        orthanc_client_from_args(argparse.Namespace(orthanc_url="http://127.0.0.1:8042"), {})
