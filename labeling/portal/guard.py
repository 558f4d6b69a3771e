"""Who is asking and how much they send, settled before any request body is read or parsed.

FastAPI reads and JSON-parses a route's body before its dependencies run, so a check in a route or a
dependency comes too late for both rules here. This ASGI middleware runs first, for every request
that may carry a body (anything but GET/HEAD/OPTIONS):

1. **Size**: a ``Content-Length`` over the limit is answered 413 without reading a byte; a body
   without one (chunked) is read up to the limit and answered 413 the moment it passes it. The
   limit is ``PORTAL_MAX_BODY_BYTES`` (default 1 MiB); creating a job (an uploaded manifest) may
   send ``JOB_BODY_BYTES``, and only after step 2 has found an admin session (anyone else is
   answered 403 there).
2. **Authentication** (``/api/…``): the session (or the ALB's OIDC headers) and the CSRF token are
   checked before the body is read; a refusal is answered 401/403 there. The principal found is
   handed to the route in ``request.state.principal``, so the route does not look it up again.

Only then is the (buffered, bounded) body passed on to the application.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from starlette.requests import Request

JOB_BODY_BYTES = 64 * 1024 * 1024  # an uploaded manifest of ~100,000 lines
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _mib(n: int) -> str:
    return f"{n / 1048576:g} MiB"


class RequestGuard:
    """ASGI middleware: body limit and authentication before the body (see the module docstring)."""

    def __init__(self, app: Any, *, api_prefix: str, limit: int, job_path: str,
                 authenticate: Callable[[Request], Awaitable[Any]]) -> None:
        self.app = app
        self.api_prefix = api_prefix
        self.limit = limit
        self.job_path = job_path
        self.authenticate = authenticate  # raises an exception carrying ``status``/``message``

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        limit = self.limit
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await _answer(send, 400, "Content-Length is not a number")
                return
            if size > max(limit, JOB_BODY_BYTES if path == self.job_path else 0):
                await _too_large(send, limit if path != self.job_path else JOB_BODY_BYTES)
                return
        if path.startswith(self.api_prefix):
            try:
                principal = await self.authenticate(Request(scope))
            except Exception as exc:  # noqa: BLE001 - the authenticator's refusals carry their status
                status = getattr(exc, "status", None)
                if not isinstance(status, int):
                    raise
                await _answer(send, status, getattr(exc, "message", None) or str(exc))
                return
            scope.setdefault("state", {})["principal"] = principal
            if path == self.job_path:  # only admins create jobs: nobody else's body is read there
                if principal.user.role != "admin":
                    await _answer(send, 403, "this needs the role admin")
                    return
                limit = JOB_BODY_BYTES
        if declared is not None and int(declared) > limit:
            await _too_large(send, limit)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Callable, limit: int) -> None:
    await _answer(send, 413, f"request body too large: at most {limit} bytes ({_mib(limit)})")


async def _answer(send: Callable, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
