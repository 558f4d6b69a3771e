"""Authentication: the login form and ``POST /login`` (local mode), logout, and ``GET /api/me``."""

from __future__ import annotations

import re
import secrets
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from labeling.portal import jobs as J
from labeling.portal import security as S
from labeling.portal.deps import get_portal, role, tx
from labeling.portal.login import TooManyAttempts, log_in, log_out

router = APIRouter()
_PRELOGIN = re.compile(r"[A-Za-z0-9_\-]{20,64}")


class MeOut(BaseModel):
    name: str
    role: str
    csrf: str = Field(description="the token for the X-CSRF-Token header of state-changing calls")


def _cookie_path(request: Request) -> str:
    return get_portal(request).root or "/"


def login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    """The form, with a CSRF token bound to a pre-login cookie (login CSRF)."""
    portal = get_portal(request)
    pre = request.cookies.get(S.PRELOGIN_COOKIE) or ""
    if not _PRELOGIN.fullmatch(pre):
        pre = secrets.token_urlsafe(24)
    response = portal.page("login.html", None, status=status, message=message,
                           login_csrf=S.csrf_token(portal.secret, "prelogin|" + pre))
    response.set_cookie(S.PRELOGIN_COOKIE, pre, max_age=3600, httponly=True, secure=portal.settings.cookie_secure,
                        samesite="strict", path=_cookie_path(request))
    return response


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(request: Request):
    portal = get_portal(request)
    if portal.settings.auth_mode != "local":
        return RedirectResponse(portal.url("/"), status_code=303)
    return login_page(request)


@router.post("/login", include_in_schema=False)
def login(request: Request, username: str = Form(max_length=128), password: str = Form(max_length=1024),
          csrf_token: str = Form(default="", max_length=200)):
    portal = get_portal(request)
    settings = portal.settings
    if settings.auth_mode != "local":
        raise J.NotFound("password login is disabled (single sign-on)")
    pre = request.cookies.get(S.PRELOGIN_COOKIE)
    if not pre or not S.csrf_ok(portal.secret, "prelogin|" + pre, csrf_token):
        return login_page(request, "The form expired; please try again.", status=403)
    address = (request.client.host if request.client else "unknown")[:64]
    try:
        with tx(request) as session:
            session_id = log_in(session, settings, username, password, address)
    except TooManyAttempts:
        response = login_page(request, "Too many failed attempts; wait a few minutes.", status=429)
        response.headers["Retry-After"] = str(settings.login_window_s)
        return response
    if session_id is None:
        return login_page(request, "Unknown user or wrong password.", status=401)
    response = RedirectResponse(portal.url("/"), status_code=303)
    response.set_cookie(S.SESSION_COOKIE, S.sign_session(portal.secret, session_id),
                        max_age=settings.session_max_age_s, httponly=True, secure=settings.cookie_secure,
                        samesite="strict", path=_cookie_path(request))
    response.delete_cookie(S.PRELOGIN_COOKIE, path=_cookie_path(request))
    return response


@router.post("/logout", include_in_schema=False)
def logout(request: Request, csrf_token: str = Form(default="", max_length=200), principal: Any = Depends(role())):
    portal = get_portal(request)
    portal.check_csrf(request, principal, csrf_token)  # a form post, outside /api/ (not seen by the guard)
    with tx(request) as session:
        log_out(session, principal.csrf_key)
    response = RedirectResponse(portal.url("/login"), status_code=303)
    response.delete_cookie(S.SESSION_COOKIE, path=_cookie_path(request))
    return response


@router.get("/api/me", tags=["users"], response_model=MeOut)
def me(request: Request, principal: Any = Depends(role())) -> MeOut:
    return MeOut(name=principal.user.name, role=principal.user.role, csrf=get_portal(request).csrf(principal))
