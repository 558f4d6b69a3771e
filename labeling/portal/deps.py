"""Request dependencies for the portal's routers: the shared :class:`~labeling.portal.app.Portal` and
the authenticated user with a role. A route opens its own transaction (``with tx(request) as
session``), so it is committed before the answer leaves (a ``yield`` dependency may exit after).

State-changing API calls were authenticated (session + CSRF) by :class:`~labeling.portal.guard.RequestGuard`
before their body was read; :func:`role` takes that principal from ``request.state`` and otherwise
authenticates here (GET requests, pages).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, ContextManager

from fastapi import Path as PathParam, Request
from sqlalchemy.orm import Session

from labeling.portal.jobs import Forbidden

if TYPE_CHECKING:
    from labeling.portal.app import Portal, Principal


def ID() -> Any:
    """A fresh path-parameter spec per route (FastAPI binds a spec object to its first parameter)."""
    return PathParam(ge=1, le=2**31 - 1)


def get_portal(request: Request) -> "Portal":
    return request.app.state.portal


def tx(request: Request) -> ContextManager[Session]:
    """One transaction: committed when the block ends, rolled back when it raises."""
    return get_portal(request).tx()


def role(*roles: str) -> Callable[[Request], "Principal"]:
    """A dependency: the request's principal, refused 403 unless it has one of ``roles`` (any when none)."""

    def dependency(request: Request) -> "Principal":
        principal: Any = getattr(request.state, "principal", None)
        if principal is None:  # a GET: authenticated here (state-changing calls were, by the guard)
            principal = get_portal(request).authenticate_alone(request)
        if roles and principal.user.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}")
        return principal

    return dependency
