"""The portal's FastAPI application: ``create_app(settings)``.

Routes live under ``PORTAL_ROOT_PATH`` (``""`` locally, ``/portal`` on ECS, where the ALB forwards
the path unchanged). Pages are server-rendered Jinja2 with autoescape (a label name such as
``<img onerror=…>`` is shown as text); data for scripts travels as JSON in a
``<script type="application/json">`` block (``tojson`` escapes ``<``, ``>``, ``&``, ``'``), and the
Content-Security-Policy allows scripts from the portal's own origin only (no inline script).

Authentication (``PORTAL_AUTH_MODE``): ``local`` — signed session cookie from ``POST /login``
(:mod:`.security`); ``alb-oidc`` — every request carries the ALB's signed headers (:mod:`.oidc`),
users are created/updated from the verified claims and Cognito groups. State-changing requests
need the CSRF token (``X-CSRF-Token`` header or ``csrf_token`` form field) in both modes.

Layout (the FastAPI full-stack template's backend): this module is the app factory — middleware,
error handlers and the routers' includes. The routers per area live in :mod:`labeling.portal.api`
(auth, pages, jobs, tasks, images, review, export, users, static), their shared dependencies in
:mod:`labeling.portal.deps` (over :class:`labeling.portal.core.Portal`), and the logic in the
services (:mod:`.jobs`, :mod:`.admin`, :mod:`.login`, :mod:`.export`, :mod:`.geometry`).

Errors: domain refusals (:class:`jobs.PortalError`) answer their status with ``{"detail": msg}``;
an unexpected exception is logged and answered 500 without internals.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, Callable, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from labeling.portal import jobs as J
from labeling.portal.accesslog import AccessLog
from labeling.portal.api import auth, export, images as images_api, jobs, pages, review, slices, static, tasks, users
from labeling.portal.core import AuthError, Portal, Principal
from labeling.portal.db import make_engine
from labeling.portal.deps import in_thread
from labeling.portal.guard import RequestGuard
from labeling.portal.images import ImageError, ImageStore, orthanc_client_for, salt_for
from labeling.portal.oidc import OidcVerifier
from labeling.portal.settings import PortalSettings

_log = logging.getLogger("labeling.portal")
VALIDATION_PROBLEMS = 20  # request-validation problems listed in one 422 answer
# Matched in this order, every request: the annotators' routes (most of the traffic) first; no two
# routers share a path.
ROUTERS = (tasks, images_api, slices, auth, pages, jobs, review, export, users, static)

TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class SecurityHeaders:
    """Pure ASGI middleware (no per-request task and body streaming, unlike ``@app.middleware``):
    CSP, nosniff, no referrer, no framing, and ``no-store`` unless the route chose a Cache-Control."""

    FIXED = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
             (b"x-frame-options", b"DENY")]
    _FIXED_NAMES = frozenset(name for name, _ in FIXED)
    _CSP = (b"content-security-policy", CSP.encode())
    _NO_STORE = (b"cache-control", b"no-store")

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self._FIXED_NAMES]
                present = {k.lower() for k, _ in headers}
                headers += self.FIXED
                if b"content-security-policy" not in present:
                    headers.append(self._CSP)
                if b"cache-control" not in present:
                    headers.append(self._NO_STORE)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: PortalSettings, *, engine: Optional[Engine] = None,
               oidc_verifier: Optional[OidcVerifier] = None, image_store: Optional[ImageStore] = None,
               orthanc_factory: Optional[Callable[[], Any]] = None, s3_client: Any = None) -> FastAPI:
    """The ASGI app. Collaborators are injectable for tests (a local EC key for OIDC, moto for S3)."""
    engine = engine or make_engine(settings)
    if settings.auth_mode == "alb-oidc" and oidc_verifier is None:
        oidc_verifier = OidcVerifier(region=settings.oidc_region or "", alb_arn=settings.oidc_alb_arn or "",
                                     user_pool_id=settings.cognito_user_pool_id or "",
                                     client_id=settings.cognito_client_id or "")
    orthanc_factory = orthanc_factory or (lambda: orthanc_client_for(settings))
    images = image_store or ImageStore(settings, orthanc_factory, lambda: salt_for(settings))
    portal = Portal(settings, engine, images, oidc_verifier, s3_client)
    root = settings.root_path

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        images.close()

    # No OpenTelemetry: FastAPI's native telemetry, on by default, would otherwise look up the global
    # tracer and meter providers (and the environment) on every request.
    app = FastAPI(title="dicom-annotate labeling portal", version="1",
                  openapi_url=f"{root}/openapi.json", docs_url=None, redoc_url=None,
                  lifespan=lifespan, telemetry=TELEMETRY_OFF)
    app.state.portal = portal

    def authenticate(request: Request) -> Principal:
        principal = portal.authenticate_alone(request)
        portal.check_csrf(request, principal)
        return principal

    async def authenticate_first(request: Request) -> Principal:
        return await in_thread(authenticate, request)

    # Added before the headers middleware below, so it runs inside it (its answers get the headers too).
    app.add_middleware(RequestGuard, api_prefix=f"{root}/api/", limit=settings.max_body_bytes,
                       job_path=f"{root}/api/jobs", authenticate=authenticate_first)

    # -- middleware and errors ----------------------------------------------------------------

    # Outermost (added last): the security headers on every answer, the guard's refusals included.
    app.add_middleware(SecurityHeaders)

    def wants_html(request: Request) -> bool:
        return not request.url.path.startswith(f"{root}/api/") and "text/html" in request.headers.get("accept", "")

    @app.exception_handler(J.PortalError)
    async def portal_error(request: Request, exc: J.PortalError):
        if wants_html(request):
            return portal.page("error.html", None, status=exc.status, message=exc.message)
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError):
        if wants_html(request) and exc.status == 401 and settings.auth_mode == "local":
            return RedirectResponse(portal.url("/login"), status_code=303)
        if wants_html(request):
            return portal.page("error.html", None, status=exc.status, message=str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        # FastAPI's default answer echoes each problem's `input`: the whole body for a too-long list
        # (26 MB for a 150,000-line manifest). Where and what only, and at most VALIDATION_PROBLEMS.
        problems = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "invalid"), "type": e.get("type", "")}
                    for e in exc.errors()[:VALIDATION_PROBLEMS]]
        if len(exc.errors()) > VALIDATION_PROBLEMS:
            problems.append({"loc": [], "msg": f"... and {len(exc.errors()) - VALIDATION_PROBLEMS} more problem(s)",
                             "type": "truncated"})
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(OperationalError)
    async def database_down(request: Request, exc: OperationalError):
        # E.g. the first request on a connection a database restart broke (the pool is then renewed).
        _log.warning("database error on %s %s: %s", request.method, request.url.path, str(exc.orig)[:200])
        return JSONResponse({"detail": "database unavailable; retry"}, status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        _log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    # -- routers per area (labeling/portal/api/) --------------------------------------------
    for module in ROUTERS:
        app.include_router(module.router, prefix=root)
    return app


def app_from_env() -> AccessLog:
    """Factory for ``uvicorn --factory`` (several worker processes): the app from the environment, with
    its access log."""
    return AccessLog(create_app(PortalSettings.from_env()))

