"""The portal's access log (labeling/portal/accesslog.py): one line per answer, the error handler's
500s included, whole lines per write, no forged lines, everything written at close."""

from __future__ import annotations

import os
import re

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from labeling.portal.accesslog import AccessLog
from tests.aio import run_isolated

def run(coroutine):
    return run_isolated(coroutine)


LINE = re.compile(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} 127\.0\.0\.1:(\d+) - "(\S+) (\S+) HTTP/1\.1" (\d{3})\n')


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/ok")
    async def ok():
        return {"ok": True}

    @app.get("/boom")
    async def boom():
        raise RuntimeError("unexpected")

    @app.exception_handler(Exception)
    async def unexpected(request, exc):
        return JSONResponse({"detail": "internal error"}, status_code=500)

    return app


async def _get(app, path: bytes, query: bytes = b"", port: int = 5000) -> int:
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path.decode("latin-1"), "raw_path": path, "query_string": query, "root_path": "",
             "headers": [], "client": ("127.0.0.1", port), "server": ("127.0.0.1", 8000)}
    try:
        await app(scope, receive, send)
    except RuntimeError:
        pass  # Starlette re-raises after the error handler's answer (uvicorn logs it)
    return sent[0]["status"]


def test_every_answer_one_line_written_at_close_and_none_forged(tmp_path):
    out = os.open(tmp_path / "access.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log = AccessLog(_app(), fd=out, flush_s=3600)  # nothing written until close
    try:
        statuses = run(_all(log))
        assert statuses == [200, 500, 404, 200]
        assert (tmp_path / "access.log").read_text() == ""
    finally:
        log.close()
        os.close(out)
    lines = (tmp_path / "access.log").read_text().splitlines(keepends=True)
    assert len(lines) == 4 and all(LINE.fullmatch(text) for text in lines), lines
    parsed = [LINE.fullmatch(text).groups() for text in lines]
    assert [(p[2], p[3]) for p in parsed] == [("/ok", "200"), ("/boom", "500"), ("/x%0D%0Ay", "404"),
                                             ("/ok?a=1?b", "200")]


async def _all(log):
    return [await _get(log, b"/ok"), await _get(log, b"/boom"), await _get(log, b"/x\r\ny"),
            await _get(log, b"/ok", b"a=1\nb")]


def test_writes_are_whole_lines_within_pipe_buf(tmp_path, monkeypatch):
    import select

    from labeling.portal import accesslog

    real_write, writes = os.write, []

    def recording_write(fd, data):
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(accesslog.os, "write", recording_write)
    read, write = os.pipe()
    log = AccessLog(_app(), fd=write, flush_s=3600)
    try:
        async def many():
            for n in range(200):
                await _get(log, b"/ok", b"q=" + b"x" * 100, port=10000 + n)
        run(many())
        log.flush()
        data = os.read(read, 1 << 20)
    finally:
        log.close()
        os.close(read)
        os.close(write)
    assert len(writes) > 1 and all(len(w) <= select.PIPE_BUF and w.endswith(b"\n") for w in writes)
    lines = data.decode().splitlines(keepends=True)
    assert len(lines) == 200 and [int(LINE.fullmatch(t).group(1)) for t in lines] == list(range(10000, 10200))
