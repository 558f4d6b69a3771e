"""The portal's access log: one line per answered request (time UTC, client address, request line,
status) on standard output, as uvicorn's access log wrote it, at a fraction of its cost.

uvicorn's access log builds a ``logging`` record per request on the event loop and writes it there
(about 8 % of the portal's CPU under load, issue 12). :class:`AccessLog` wraps the whole ASGI app (so
every answer is logged, the error handler's 500s included): the request thread of the loop only
appends ``(time, scope, status)`` to a queue; a background thread formats the lines and writes them
every :data:`FLUSH_S` seconds, in writes of whole lines of at most ``PIPE_BUF`` bytes (atomic on a
pipe, so the lines of several worker processes never mix). Lines still queued are written at exit.
The path is percent-quoted as uvicorn does, and control characters in the query are replaced, so a
request cannot forge a log line.
"""

from __future__ import annotations

import atexit
import collections
import os
import select
import threading
import time
import urllib.parse
from typing import Any, Callable

FLUSH_S = 0.25
_CONTROL = {c: "?" for c in [*range(32), 127]}


class AccessLog:
    """ASGI middleware: the access log of ``app``, written to file descriptor ``fd`` (stdout)."""

    def __init__(self, app: Any, fd: int = 1, flush_s: float = FLUSH_S) -> None:
        self.app = app
        self.fd = fd
        self._queue: collections.deque[tuple[float, dict, int]] = collections.deque()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one writer at a time (the thread, or close at exit)
        self._thread = threading.Thread(target=self._run, args=(flush_s,), name="portal-access-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                self._queue.append((time.time(), scope, message["status"]))
            await send(message)

        await self.app(scope, receive, send_logged)

    def _run(self, flush_s: float) -> None:
        while not self._stop.wait(flush_s):
            self.flush()

    def flush(self) -> None:
        """Write every queued line."""
        with self._lock:
            lines = []
            while self._queue:
                lines.append(line(*self._queue.popleft()))
            chunk: list[bytes] = []
            size = 0
            for text in lines:
                data = text.encode("utf-8", "backslashreplace")
                if chunk and size + len(data) > select.PIPE_BUF:
                    self._write(b"".join(chunk))
                    chunk, size = [], 0
                chunk.append(data)
                size += len(data)
            if chunk:
                self._write(b"".join(chunk))

    def _write(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:  # stdout closed: nothing to log to
            pass

    def close(self) -> None:
        self._stop.set()
        self.flush()


def line(at: float, scope: dict, status: int) -> str:
    """``2026-12-04 18:38:47,600 127.0.0.1:5555 - "POST /api/... HTTP/1.1" 200``."""
    client = scope.get("client")
    path = urllib.parse.quote(scope.get("root_path", "") + scope["path"])
    query = scope.get("query_string") or b""
    if query:
        path += "?" + query.decode("ascii", "backslashreplace").translate(_CONTROL)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at))
    return (f"{stamp},{int(at % 1 * 1000):03d} {'%s:%d' % tuple(client) if client else ''} - "
            f"\"{scope['method']} {path} HTTP/{scope.get('http_version', '1.1')}\" {status}\n")
