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

Layout: this module builds the app (settings, middleware, error handlers, login, pages, jobs and
export routes); the routers per area live in :mod:`labeling.portal.api` (tasks, images, review,
users, admin pages), with the shared dependencies in :mod:`labeling.portal.deps` and the logic in
the services (:mod:`.jobs`, :mod:`.admin`, :mod:`.export`, :mod:`.geometry`).

Errors: domain refusals (:class:`jobs.PortalError`) answer their status with ``{"detail": msg}``;
an unexpected exception is logged and answered 500 without internals.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets as _secrets
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable, Optional

from fastapi import Body, FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from labeling import viewer_assets
from labeling.manifest import ManifestError, ManifestLine
from labeling.portal import admin as A
from labeling.portal import jobs as J
from labeling.portal import security as S
from labeling.portal.deps import ID
from labeling.portal.db import make_engine, ping, session_factory, transaction
from labeling.portal.geometry import checked_geometry
from labeling.portal.guard import RequestGuard
from labeling.portal.export import export_manifest, export_sr, manifest_lines
from labeling.portal.images import ImageError, ImageStore, orthanc_client_for, salt_for
from labeling.portal.models import FLAG_REASONS, Job, LoginFailure, Session as DbSession, User, utcnow
from labeling.portal.oidc import OidcError, OidcVerifier
from labeling.portal.settings import PortalSettings

_log = logging.getLogger("labeling.portal")
HERE = Path(__file__).resolve().parent
_ASSET_NAME = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)+")

CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
       "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


class SecurityHeaders:
    """Pure ASGI middleware (no per-request task and body streaming, unlike ``@app.middleware``):
    CSP, nosniff, no referrer, no framing, and ``no-store`` unless the route chose a Cache-Control."""

    FIXED = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
             (b"x-frame-options", b"DENY")]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                fixed = {name for name, _ in self.FIXED}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in fixed]
                present = {k.lower() for k, _ in headers}
                headers += self.FIXED
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", CSP.encode()))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AuthError(Exception):
    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class Principal:
    """The authenticated user of a request and the key its CSRF token is bound to."""

    def __init__(self, user: User, csrf_key: str) -> None:
        self.user = user
        self.csrf_key = csrf_key


# ----------------------------------------------------------------------------- request bodies

class StateIn(BaseModel):
    state: str = Field(pattern="^(active|paused)$")


class QueryIn(BaseModel):
    """The manifest builder's filters (``python -m labeling manifest --modality … --study-date-from …``)."""

    modality: list[str] = Field(default_factory=list, max_length=20, description="e.g. [\"DX\", \"CR\"]")
    study_date_from: Optional[str] = Field(default=None, max_length=10, description="YYYYMMDD or YYYY-MM-DD")
    study_date_to: Optional[str] = Field(default=None, max_length=10)
    patient_id: Optional[str] = Field(default=None, max_length=64, description="Orthanc wildcards * and ? allowed")
    study_uid: list[str] = Field(default_factory=list, max_length=1000)
    series_uid: list[str] = Field(default_factory=list, max_length=1000)
    limit: Optional[int] = Field(default=None, ge=1, le=100_000, description="the first N images in manifest order")


class JobIn(BaseModel):
    """A job: exactly one schema source (object, file in schemas/, uploaded text) and exactly one of a
    manifest (uploaded, JSON Lines parsed into objects) or an Orthanc query."""

    name: str = Field(min_length=1, max_length=63)
    schema_: Optional[dict[str, Any]] = Field(default=None, alias="schema")
    schema_file: Optional[str] = Field(default=None, max_length=128, description="a file name from GET /api/schemas")
    schema_text: Optional[str] = Field(default=None, max_length=1_000_000, description="uploaded YAML or JSON")
    manifest: Optional[list[dict[str, Any]]] = Field(default=None, min_length=1, max_length=100_000)
    query: Optional[QueryIn] = None
    label_attribute: Optional[str] = Field(default=None, max_length=127)
    annotators_per_item: Optional[int] = Field(default=None, ge=1, le=100)
    lease_seconds: Optional[int] = Field(default=None, ge=1, le=7 * 86400)
    agreement_threshold: Optional[float] = Field(default=None, ge=-1.0, le=1.0)


class ExportIn(BaseModel):
    include_review: bool = False


# ----------------------------------------------------------------------------------- the app

class Portal:
    """What the routes share: settings, database, image store, verifier, templates."""

    def __init__(self, settings: PortalSettings, engine: Engine, images: ImageStore,
                 verifier: Optional[OidcVerifier], s3_client: Any = None) -> None:
        self.settings = settings
        self.engine = engine
        self.factory = session_factory(engine)
        # Reads outside a transaction (no BEGIN/COMMIT round trips): the guard's session lookup.
        self.read_factory = session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))
        self.images = images
        self.verifier = verifier
        self.secret = settings.require_session_secret()
        self.s3_client = s3_client
        self.root = settings.root_path
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(default=True, default_for_string=True))
        self._viewer_files: dict[str, tuple[Path, str]] = {}

    def tx(self):
        return transaction(self.factory)

    def url(self, path: str) -> str:
        return f"{self.root}{path}"

    # -- authentication ----------------------------------------------------------------------

    def authenticate(self, request: Request, session: Session) -> Principal:
        if self.settings.auth_mode == "alb-oidc":
            assert self.verifier is not None
            try:
                identity = self.verifier.identify(request.headers)
            except OidcError as exc:
                raise AuthError(str(exc), exc.status) from None
            user = session.scalars(select(User).where(User.external_sub == identity.sub)).first()
            if user is None:
                user = J.find_user(session, identity.name)
                if user is not None and user.external_sub not in (None, identity.sub):
                    raise AuthError("user name already bound to another identity", 403)
                if user is None:
                    user = User(name=identity.name, role=identity.role, external_sub=identity.sub, active=True)
                    session.add(user)
                user.external_sub = identity.sub
            user.role = identity.role  # Cognito groups are the source of truth for roles
            if not user.active:
                raise AuthError("account disabled", 403)
            session.flush()
            return Principal(user, "oidc|" + identity.sub)
        session_id = S.unsign_session(self.secret, request.cookies.get(S.SESSION_COOKIE))
        if session_id is None:
            raise AuthError("not logged in")
        # One round trip for the session and its user (this runs on every request).
        found = session.execute(select(DbSession, User).join(User, User.id == DbSession.user_id)
                                .where(DbSession.id == session_id)).first()
        if found is None or found[0].expires_at < utcnow():
            raise AuthError("session expired; log in again")
        user = found[1]
        if not user.active:
            raise AuthError("account disabled", 403)
        return Principal(user, "session|" + session_id)

    def authenticate_alone(self, request: Request) -> Principal:
        """:meth:`authenticate` outside the route's transaction: locally one SELECT without BEGIN/COMMIT;
        with alb-oidc in a transaction (users are created and updated from the verified claims)."""
        if self.settings.auth_mode == "local":
            with self.read_factory() as session:
                return self.authenticate(request, session)
        with self.tx() as session:
            return self.authenticate(request, session)

    def check_csrf(self, request: Request, principal: Principal, form_token: Optional[str] = None) -> None:
        token = request.headers.get(S.CSRF_HEADER) or form_token
        if not S.csrf_ok(self.secret, principal.csrf_key, token):
            raise J.Forbidden("CSRF token missing or invalid")

    def csrf(self, principal: Principal) -> str:
        return S.csrf_token(self.secret, principal.csrf_key)

    # -- viewer files ------------------------------------------------------------------------

    def viewer_file(self, name: str) -> tuple[Path, str]:
        if not _ASSET_NAME.fullmatch(name):
            raise J.NotFound("no such file")
        if name not in self._viewer_files:
            try:
                self._viewer_files = {key: (path, ctype) for key, path, ctype in viewer_assets.asset_files()}
            except viewer_assets.ViewerAssetsError as exc:
                raise J.NotFound(str(exc)) from None
        if name not in self._viewer_files:
            raise J.NotFound("no such file")
        return self._viewer_files[name]

    def viewer_sri(self) -> Optional[str]:
        try:
            return viewer_assets.sri()
        except viewer_assets.ViewerAssetsError:
            return None

    # -- rendering ---------------------------------------------------------------------------

    def page(self, name: str, principal: Optional[Principal], status: int = 200, **context: Any) -> HTMLResponse:
        template = self.templates.get_template(name)
        html = template.render(root=self.root, user=principal.user if principal else None,
                               csrf=self.csrf(principal) if principal else "",
                               local_auth=self.settings.auth_mode == "local", **context)
        return HTMLResponse(html, status_code=status)


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

    app = FastAPI(title="dicom-annotate labeling portal", version="1",
                  openapi_url=f"{root}/openapi.json", docs_url=None, redoc_url=None,
                  lifespan=lifespan)
    app.state.portal = portal

    def authenticate_first(request: Request) -> Principal:
        principal = portal.authenticate_alone(request)
        portal.check_csrf(request, principal)
        return principal

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

    # -- helpers -----------------------------------------------------------------------------

    def auth(request: Request, session: Session, *roles: str) -> Principal:
        # State-changing API calls were authenticated by RequestGuard before their body was read.
        principal = getattr(request.state, "principal", None) or portal.authenticate(request, session)
        if roles and principal.user.role not in roles:
            raise J.Forbidden(f"this needs the role {' or '.join(roles)}")
        return principal

    def mutate(request: Request, session: Session, *roles: str) -> Principal:
        principal = auth(request, session, *roles)
        portal.check_csrf(request, principal)
        return principal

    # -- routers per area (labeling/portal/api/) --------------------------------------------
    from labeling.portal.api import images as images_api, pages as pages_api, review as review_api
    from labeling.portal.api import tasks as tasks_api, users as users_api

    for module in (tasks_api, images_api, review_api, users_api, pages_api):
        app.include_router(module.router, prefix=root)

    # -- health, static ----------------------------------------------------------------------

    @app.get(f"{root}/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        ok = ping(engine)
        return JSONResponse({"status": "ok" if ok else "database unreachable"}, status_code=200 if ok else 503)

    @app.get(f"{root}/static/viewer/{{name}}", include_in_schema=False)
    def viewer_static(name: str) -> FileResponse:
        path, content_type = portal.viewer_file(name)
        return FileResponse(path, media_type=content_type, headers={"Cache-Control": "public, max-age=300"})

    @app.get(f"{root}/static/portal/{{name}}", include_in_schema=False)
    def portal_static(name: str) -> FileResponse:
        types = {"portal.js": "text/javascript; charset=utf-8", "portal.css": "text/css; charset=utf-8"}
        if name not in types:
            raise J.NotFound("no such file")
        return FileResponse(HERE / "static" / name, media_type=types[name],
                            headers={"Cache-Control": "public, max-age=60"})

    # -- login -------------------------------------------------------------------------------

    def login_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
        pre = request.cookies.get(S.PRELOGIN_COOKIE) or ""
        if not re.fullmatch(r"[A-Za-z0-9_\-]{20,64}", pre):
            pre = _secrets.token_urlsafe(24)
        response = portal.page("login.html", None, status=status, message=message,
                               login_csrf=S.csrf_token(portal.secret, "prelogin|" + pre))
        response.set_cookie(S.PRELOGIN_COOKIE, pre, max_age=3600, httponly=True, secure=settings.cookie_secure,
                            samesite="strict", path=root or "/")
        return response

    @app.get(f"{root}/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request):
        if settings.auth_mode != "local":
            return RedirectResponse(portal.url("/"), status_code=303)
        return login_page(request)

    @app.post(f"{root}/login", include_in_schema=False)
    def login(request: Request, username: str = Form(max_length=128), password: str = Form(max_length=1024),
              csrf_token: str = Form(default="", max_length=200)):
        if settings.auth_mode != "local":
            raise J.NotFound("password login is disabled (single sign-on)")
        pre = request.cookies.get(S.PRELOGIN_COOKIE)
        if not pre or not S.csrf_ok(portal.secret, "prelogin|" + pre, csrf_token):
            return login_page(request, "The form expired; please try again.", status=403)
        address = (request.client.host if request.client else "unknown")[:64]
        now = utcnow()
        window_start = now - dt.timedelta(seconds=settings.login_window_s)
        with portal.tx() as session:
            failures = session.scalar(select(func.count(LoginFailure.id)).where(
                LoginFailure.username == username, LoginFailure.address == address,
                LoginFailure.at > window_start)) or 0
            if failures >= settings.login_max_failures:
                response = login_page(request, "Too many failed attempts; wait a few minutes.", status=429)
                response.headers["Retry-After"] = str(settings.login_window_s)
                return response
            user = J.find_user(session, username)
            ok = S.verify_password(user.password_hash if user else None, password) and user is not None \
                and user.active
            if not ok:
                session.add(LoginFailure(username=username, address=address, at=now))
                session.execute(delete(LoginFailure).where(LoginFailure.at < window_start))
            else:
                assert user is not None
                if user.password_hash and S.needs_rehash(user.password_hash):
                    user.password_hash = S.hash_password(password)
                session.execute(delete(LoginFailure).where(LoginFailure.username == username,
                                                           LoginFailure.address == address))
                session.execute(delete(DbSession).where(DbSession.expires_at < now))  # housekeeping
                session_id = S.new_session_id()
                session.add(DbSession(id=session_id, user_id=user.id,
                                      expires_at=now + dt.timedelta(seconds=settings.session_max_age_s)))
        if not ok:
            return login_page(request, "Unknown user or wrong password.", status=401)
        response = RedirectResponse(portal.url("/"), status_code=303)
        response.set_cookie(S.SESSION_COOKIE, S.sign_session(portal.secret, session_id),
                            max_age=settings.session_max_age_s, httponly=True, secure=settings.cookie_secure,
                            samesite="strict", path=root or "/")
        response.delete_cookie(S.PRELOGIN_COOKIE, path=root or "/")
        return response

    @app.post(f"{root}/logout", include_in_schema=False)
    def logout(request: Request, csrf_token: str = Form(default="", max_length=200)):
        with portal.tx() as session:
            principal = auth(request, session)
            portal.check_csrf(request, principal, csrf_token)
            if principal.csrf_key.startswith("session|"):
                session.execute(delete(DbSession).where(DbSession.id == principal.csrf_key[len("session|"):]))
        response = RedirectResponse(portal.url("/login"), status_code=303)
        response.delete_cookie(S.SESSION_COOKIE, path=root or "/")
        return response

    # -- pages -------------------------------------------------------------------------------

    @app.get(f"{root}/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request):
        with portal.tx() as session:
            principal = auth(request, session)
            user = principal.user
            rows = []
            for job in J.list_jobs(session, user):
                if user.role == "annotator":
                    rows.append({"job": job, "mine": J.annotator_progress(session, job, user)})
                else:
                    rows.append({"job": job, "progress": J.job_progress(session, job)})
            queue = len(J.review_queue(session)) if user.role in ("admin", "reviewer") else 0
            return portal.page("dashboard.html", principal, rows=rows, queue=queue)

    @app.get(f"{root}/jobs/{{job_id}}/label", response_class=HTMLResponse, include_in_schema=False)
    def task_page(request: Request, job_id: int = ID()):
        with portal.tx() as session:
            principal = auth(request, session, "annotator")
            job = J.get_job(session, job_id)
            return portal.page("task.html", principal, job=job, viewer_sri=portal.viewer_sri(), flag_reasons=FLAG_REASONS,
                               data={"root": root, "job_id": job.id, "csrf": portal.csrf(principal),
                                     "mode": "label"})

    @app.get(f"{root}/jobs/{{job_id}}", response_class=HTMLResponse, include_in_schema=False)
    def job_page(request: Request, job_id: int = ID()):
        with portal.tx() as session:
            principal = auth(request, session, "admin", "reviewer")
            job = J.get_job(session, job_id)
            return portal.page("job.html", principal, job=job, progress=J.job_progress(session, job),
                               figures=A.job_figures(session, job), export_bucket=settings.export_bucket,
                               data={"root": root, "job_id": job.id, "csrf": portal.csrf(principal),
                                     "mode": "job"})

    @app.get(f"{root}/review", response_class=HTMLResponse, include_in_schema=False)
    def review_list_page(request: Request):
        with portal.tx() as session:
            principal = auth(request, session, "admin", "reviewer")
            items = J.review_queue(session)
            names = {j.id: j.name for j in session.scalars(select(Job))}
            flags = {item.id: ", ".join(sorted({f["text"] for f in J.item_flags(session, item)}))
                     for item in items if item.consolidated is None}
            return portal.page("review_list.html", principal, items=items, job_names=names, flags=flags)

    @app.get(f"{root}/review/{{item_id}}", response_class=HTMLResponse, include_in_schema=False)
    def review_page(request: Request, item_id: int = ID()):
        with portal.tx() as session:
            principal = auth(request, session, "admin", "reviewer")
            item = J.get_item_for(session, item_id, principal.user)
            job = J.get_job(session, item.job_id)
            detail = J.review_detail(session, item, principal.user)
            return portal.page("review.html", principal, job=job, item=item, detail=detail,
                               viewer_sri=portal.viewer_sri(),
                               data={"root": root, "item_id": item.id, "position": item.position,
                                     "csrf": portal.csrf(principal), "mode": "review", "schema": job.schema,
                                     "pixel_spacing": (item.geometry or {}).get("pixel_spacing"),
                                     "image_url": portal.url(f"/api/items/{item.id}/image"),
                                     "initialAnswer": J.as_single_answer(item.final or item.consolidated),
                                     "overlays": [{"name": a["annotator"], "answer": a["answer"]}
                                                  for a in detail["answers"]],
                                     "state": item.state})

    # -- JSON API ----------------------------------------------------------------------------

    @app.get(f"{root}/api/me", tags=["users"])
    def me(request: Request) -> dict[str, Any]:
        with portal.tx() as session:
            principal = auth(request, session)
            return {"name": principal.user.name, "role": principal.user.role, "csrf": portal.csrf(principal)}

    @app.get(f"{root}/api/jobs", tags=["jobs"])
    def api_jobs(request: Request) -> list[dict[str, Any]]:
        with portal.tx() as session:
            principal = auth(request, session)
            user = principal.user
            out = []
            for job in J.list_jobs(session, user):
                entry = {"id": job.id, "name": job.name, "state": job.state,
                         "annotators_per_item": job.annotators_per_item}
                if user.role == "annotator":
                    entry["mine"] = J.annotator_progress(session, job, user)
                else:
                    entry["progress"] = J.job_progress(session, job)
                out.append(entry)
            return out

    @app.post(f"{root}/api/jobs", tags=["jobs"], status_code=201)
    def api_create_job(request: Request, body: JobIn) -> dict[str, Any]:
        with portal.tx() as session:
            mutate(request, session, "admin")  # before Orthanc is asked about anything
        schema = A.resolve_schema(schema=body.schema_, schema_file=body.schema_file, schema_text=body.schema_text)
        if (body.manifest is None) == (body.query is None):
            raise J.Invalid("give exactly one of manifest (uploaded lines) or query (Orthanc filters)")
        if body.query is not None:
            lines = A.manifest_from_query(images.orthanc(), schema, body.query.model_dump())
        else:
            try:
                lines = [ManifestLine.from_dict(line) for line in body.manifest or []]
            except ManifestError as exc:
                raise J.Invalid(str(exc)) from None
        geometry = checked_geometry(images.orthanc(), [line.source for line in lines])
        with portal.tx() as session:
            job = J.create_job(session, name=body.name, schema=schema, lines=lines, geometry=geometry,
                               label_attribute=body.label_attribute, annotators_per_item=body.annotators_per_item,
                               lease_seconds=body.lease_seconds or settings.lease_seconds,
                               agreement_threshold=(settings.agreement_threshold if body.agreement_threshold is None
                                                    else body.agreement_threshold))
            return {"id": job.id, "name": job.name, "items": len(lines)}

    @app.get(f"{root}/api/jobs/{{job_id}}/progress", tags=["jobs"])
    def api_progress(request: Request, job_id: int = ID()) -> dict[str, Any]:
        with portal.tx() as session:
            principal = auth(request, session)
            job = J.get_job(session, job_id)
            if principal.user.role == "annotator":
                return J.annotator_progress(session, job, principal.user)
            return J.job_progress(session, job)

    @app.post(f"{root}/api/jobs/{{job_id}}/state", tags=["jobs"])
    def api_state(request: Request, body: StateIn, job_id: int = ID()) -> dict[str, Any]:
        with portal.tx() as session:
            mutate(request, session, "admin")
            job = J.set_job_state(session, J.get_job(session, job_id), body.state)
            return {"id": job.id, "state": job.state}

    @app.post(f"{root}/api/jobs/{{job_id}}/close", tags=["jobs"])
    def api_close(request: Request, job_id: int = ID()) -> dict[str, Any]:
        with portal.tx() as session:
            mutate(request, session, "admin")
            job = J.get_job(session, job_id)
            summary = J.close_job(session, job)
            return {"id": job.id, "state": job.state, **summary}

    def export_destination(job: Job) -> str:
        if settings.export_bucket:
            return f"s3://{settings.export_bucket}/portal-exports/{job.name}/output.manifest"
        return str(Path(settings.cache_dir) / "exports" / job.name / "output.manifest")

    @app.post(f"{root}/api/jobs/{{job_id}}/export", tags=["export"])
    def api_export(request: Request, job_id: int = ID(), body: ExportIn = Body(default_factory=ExportIn)) -> dict[str, Any]:
        with portal.tx() as session:
            mutate(request, session, "admin")
            job = J.get_job(session, job_id)
            result = export_manifest(session, job, export_destination(job), include_review=body.include_review,
                                     s3_client=portal.s3_client, kms_key_id=settings.export_kms_key_id)
            return {"destination": result.destination, "written": result.written,
                    "left_out_review": result.left_out_review, "left_out_open": result.left_out_open,
                    "left_out_excluded": result.left_out_excluded,
                    "download": portal.url(f"/api/jobs/{job.id}/output.manifest")}

    @app.get(f"{root}/api/jobs/{{job_id}}/output.manifest", tags=["export"])
    def api_download(request: Request, job_id: int = ID()) -> Response:
        with portal.tx() as session:
            auth(request, session, "admin")
            job = J.get_job(session, job_id)
            lines = manifest_lines(session, job).lines
        body = "".join(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines)
        return Response(body, media_type="application/jsonlines",
                        headers={"Content-Disposition": f'attachment; filename="{job.name}.manifest"'})

    @app.post(f"{root}/api/jobs/{{job_id}}/sr", tags=["export"])
    def api_sr(request: Request, job_id: int = ID()) -> dict[str, Any]:
        with portal.tx() as session:
            mutate(request, session, "admin")
            job = J.get_job(session, job_id)
            result = export_sr(session, job, images.orthanc())
            return {"stored": {str(k): v for k, v in result.stored.items()}, "errors": result.errors}

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several worker processes): the app from the environment."""
    return create_app(PortalSettings.from_env())
