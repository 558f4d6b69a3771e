"""bench/portal_load.py's lean load client: HTTP/1.1 framing (RFC 9112), keep-alive, cookies, the CSRF
header, and the checks that make a wrong 2xx body an error, against a loopback server that writes
exact bytes (the real portal's side is tests/integration/test_portal_load_live.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.aio import run_isolated

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("portal_load", ROOT / "bench" / "portal_load.py")
load = sys.modules["portal_load"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up there
_spec.loader.exec_module(load)


class Server:
    """Reads each request (head + Content-Length body), records it with its connection's number, and
    writes what ``answer(path)`` returns; ``close_after`` closes the connection after that answer,
    ``drop(path, connection)`` closes it instead of answering."""

    def __init__(self, answer: Callable[[str], bytes], close_after: Callable[[str], bool] = lambda path: False,
                 drop: Callable[[str, int], bool] = lambda path, connection: False):
        self.answer, self.close_after, self.drop = answer, close_after, drop
        self.requests: list[tuple[int, bytes, bytes]] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append((number, head, body))
                path = head.split(b" ")[1].decode()
                if self.drop(path, number):
                    break
                writer.write(self.answer(path))
                await writer.drain()
                if self.close_after(path):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        self.server.close()


def reply(body: bytes, status: str = "200 OK", headers: bytes = b"") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (status.encode(), len(body), headers, body)


def chunked(*parts: bytes, trailer: bytes = b"") -> bytes:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(part), part) for part in parts)
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n" + trailer + b"\r\n"


def run(coroutine):
    return run_isolated(coroutine, 20)


def test_keep_alive_cookies_and_csrf_through_a_login():
    page = b'<form><input type="hidden" name="csrf_token" value="form-token"></form>'
    answers = {"/login": None, "/api/me": reply(b'{"csrf": "header-token"}'),
               "/api/jobs/1/next": reply(b'{"assignment_id": 5, "image_url": "/api/items/9/image"}')}
    posted = []

    def answer(path: str) -> bytes:
        if path == "/login":
            posted.append(True)
            if len(posted) == 1:  # GET: the form and its pre-login cookie
                return reply(page, headers=b"Set-Cookie: pre=p1; Path=/; HttpOnly\r\n")
            return reply(b"", "303 See Other", b"Location: /\r\nSet-Cookie: session=s1; Path=/\r\n"
                         b'Set-Cookie: pre=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0\r\n')
        return answers[path]

    async def scenario():
        server = Server(answer)
        async with server as url:
            client = await load.login(url, "ann-1", load.LeanClient)
            task = await client.request("POST", "/api/jobs/1/next", csrf=True)
            await client.aclose()
        return server, client, task

    server, client, task = run(scenario())
    assert json.loads(task.body)["assignment_id"] == 5
    assert server.connections == 1 == client.connections  # four requests, one kept-alive connection
    heads = [head for _, head, _ in server.requests]
    assert b"Cookie:" not in heads[0]
    assert b"Cookie: pre=p1\r\n" in heads[1] and b"Content-Type: application/x-www-form-urlencoded" in heads[1]
    assert server.requests[1][2] == b"username=ann-1&password=bench+password+123&csrf_token=form-token"
    assert b"Cookie: session=s1\r\n" in heads[2]  # the expired pre-login cookie is gone
    assert b"X-CSRF-Token" not in heads[2]
    assert b"X-CSRF-Token: header-token\r\n" in heads[3] and b"Content-Length: 0\r\n" in heads[3]


def test_chunked_bodies_with_extensions_and_trailers():
    answers = {"/a": chunked(b'{"status":', b' "ok"}'), "/b": chunked(b"x" * 70000, b"yz", trailer=b"X-T: 1\r\n"),
               "/c": reply(b"after")}

    async def scenario():
        server = Server(answers.__getitem__)
        async with server as url:
            client = load.LeanClient(url)
            replies = [await client.request("GET", path) for path in ("/a", "/b", "/c")]
            await client.aclose()
        return server, replies

    server, replies = run(scenario())
    assert [r.body for r in replies] == [b'{"status": "ok"}', b"x" * 70000 + b"yz", b"after"]
    assert server.connections == 1


def test_a_closed_connection_is_replaced_and_an_idle_close_retried_once():
    async def scenario():
        server = Server(lambda path: reply(path.encode(), headers=b"Connection: close\r\n" if path == "/1" else b""),
                        close_after=lambda path: path in ("/1", "/2"),
                        drop=lambda path, connection: path == "/4" and connection == 3)
        async with server as url:
            client = load.LeanClient(url)
            first = await client.request("GET", "/1")  # Connection: close: the client opens a new one
            second = await client.request("GET", "/2")  # the server closes after it without saying so
            await asyncio.sleep(0.05)
            third = await client.request("POST", "/3", b"{}")
            # The server closes a kept-alive connection as the request arrives, before a byte of answer:
            # sent once more on a new connection (what browsers do), once only.
            fourth = await client.request("POST", "/4", b"{}")
            await client.aclose()
        return server, client, [first.body, second.body, third.body, fourth.body]

    server, client, bodies = run(scenario())
    assert bodies == [b"/1", b"/2", b"/3", b"/4"]
    assert client.connections == 4 == server.connections
    assert [(connection, head.split(b" ")[1]) for connection, head, _ in server.requests] == [
        (1, b"/1"), (2, b"/2"), (3, b"/3"), (3, b"/4"), (4, b"/4")]


def test_a_fresh_connection_closed_without_an_answer_is_not_retried():
    async def scenario():
        server = Server(lambda path: b"", drop=lambda path, connection: True)
        async with server as url:
            client = load.LeanClient(url, timeout=5)
            with pytest.raises(load.TransportError, match="closed before the whole answer"):
                await client.request("POST", "/answer", b"{}")
        return server

    assert run(scenario()).connections == 1


@pytest.mark.parametrize("raw, message", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed before the whole answer"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc", "more bytes than its Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX", "chunk not followed by CRLF"),
])
def test_a_broken_answer_is_a_transport_error(raw, message):
    async def scenario():
        async with Server(lambda path: raw, close_after=lambda path: True) as url:
            client = load.LeanClient(url, timeout=5)
            with pytest.raises(load.TransportError, match=message):
                await client.request("GET", "/x")
            await client.aclose()

    run(scenario())


def test_no_answer_in_time_is_a_transport_error():
    async def scenario():
        async with Server(lambda path: b"HTTP/1.1 200 OK\r\n") as url:
            client = load.LeanClient(url, timeout=0.3)
            with pytest.raises(load.TransportError, match="no answer in 0.3 s"):
                await client.request("GET", "/slow")

    run(scenario())


def test_a_wrong_2xx_body_counts_as_an_error_and_a_right_one_does_not():
    task = b'{"assignment_id": 5, "image_url": "/api/items/9/image"}'
    dicom = b"\0" * 128 + b"DICM" + b"\2" * 16
    answers = {"/next-ok": reply(task), "/next-done": reply(b'{"done": true}'), "/next-html": reply(b"<html>"),
               "/next-list": reply(b"[1]"), "/next-no-image": reply(b'{"assignment_id": 5}'),
               "/image-ok": reply(dicom), "/image-png": reply(b"\x89PNG" + b"\0" * 200),
               "/answer-ok": reply(b'{"assignment_id": 5, "stored": true}'),
               "/answer-other": reply(b'{"assignment_id": 6, "stored": true}'),
               "/answer-denied": reply(b'{"detail": "CSRF"}', "403 Forbidden")}
    checks = {"next": load.check_task, "image": load.check_dicom, "answer": load.check_stored(5)}

    async def scenario():
        rec = load.Recorder()
        async with Server(answers.__getitem__) as url:
            client = load.LeanClient(url)
            results = {path: await rec.call(path, client.request("GET", path), checks[path[1:].split("-")[0]])
                       for path in answers}
            await client.aclose()
        return rec, results

    rec, results = run(scenario())
    assert {path for path, value in results.items() if value is None} == {
        "/next-html", "/next-list", "/next-no-image", "/image-png", "/answer-other", "/answer-denied"}
    assert dict(rec.errors) == {path: 1 for path in ("/next-html", "/next-list", "/next-no-image", "/image-png",
                                                     "/answer-other", "/answer-denied")}
    assert "not a DICOM file" in rec.samples["/image-png"] and rec.samples["/answer-denied"].startswith("403")
    assert results["/next-done"] == {"done": True}
