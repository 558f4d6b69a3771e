"""Request dependencies for the portal's routers: the shared :class:`~labeling.portal.core.Portal` and
the authenticated user with a role. A route opens its own transaction (``with tx(request) as
session``), so it is committed before the answer leaves (a ``yield`` dependency may exit after).

State-changing API calls were authenticated (session + CSRF) by :class:`~labeling.portal.guard.RequestGuard`
before their body was read; :func:`role` takes that principal from ``request.state`` and otherwise
authenticates here (GET requests, pages).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, ContextManager, TypeVar

from fastapi import Path as PathParam, Request
from sqlalchemy.orm import Session

from labeling.portal.core import Portal, Principal
from labeling.portal.jobs import Forbidden


T = TypeVar("T")
# The threads of the hot paths' blocking work (database, image files): a plain executor hop costs about
# half the CPU of anyio's run_in_threadpool, which FastAPI uses for sync routes and dependencies
# (issue 12); as many threads as anyio's default limit.
_THREADS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="portal")


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in one of the portal's threads (the annotator routes are async and hop once)."""
    return await asyncio.get_running_loop().run_in_executor(_THREADS, fn, *args)


def ID() -> Any:
    """A fresh path-parameter spec per route (FastAPI binds a spec object to its first parameter)."""
    return PathParam(ge=1, le=2**31 - 1)


def get_portal(request: Request) -> Portal:
    return request.app.state.portal


def tx(request: Request) -> ContextManager[Session]:
    """One transaction: committed when the block ends, rolled back when it raises."""
    return get_portal(request).tx()


def principal_of(request: Request, *roles: str) -> Principal:
    """The request's principal, refused 403 unless it has one of ``roles`` (any when none). Blocking
    (a database read for a GET): call it from a route's worker thread."""
    principal: Any = getattr(request.state, "principal", None)
    if principal is None:  # a GET: authenticated here (state-changing calls were, by the guard)
        principal = get_portal(request).authenticate_alone(request)
    if roles and principal.user.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(roles)}")
    return principal


def role(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: :func:`principal_of`. Async, so the guard's principal of a POST is taken without a
    hop to the thread pool (a sync dependency costs one per request); a GET's lookup goes there."""

    async def dependency(request: Request) -> Principal:
        if getattr(request.state, "principal", None) is not None:
            return principal_of(request, *roles)
        return await in_thread(principal_of, request, *roles)

    return dependency
