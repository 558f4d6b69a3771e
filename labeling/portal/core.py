"""What every route shares: :class:`Portal` (settings, database, image store, OIDC verifier, templates),
the authenticated :class:`Principal` of a request and :class:`AuthError`. Built once by
:func:`labeling.portal.app.create_app`; routers reach it through :mod:`labeling.portal.deps`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from labeling.gt import viewer_assets
from labeling.portal import jobs as J
from labeling.portal import security as S
from labeling.portal.db import one_row, session_factory, transaction
from labeling.portal.images import ImageStore
from labeling.portal.leasing import ITEM_READS
from labeling.portal.models import User, utcnow
from labeling.portal.oidc import OidcError, OidcVerifier
from labeling.portal.settings import PortalSettings

HERE = Path(__file__).resolve().parent
# Every request's session lookup (db.one_row: no SQLAlchemy statement, Connection or transaction per
# request), only the columns a principal needs; the item routes add what they read of their item
# (leasing.ITEM_READS), so session, user and item take one statement.
_SESSION_USER = ("SELECT u.id, u.name, u.role, u.active, s.expires_at{} "
                 "FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = %(sid)s")
_SESSION_LOOKUP = _SESSION_USER.format("")
_SESSION_ITEM = {what: _SESSION_USER.format(", " + sql) for what, sql in ITEM_READS.items()}
_USER_ITEM = {what: f"SELECT {sql} FROM users u WHERE u.id = %(user)s" for what, sql in ITEM_READS.items()}
_ASSET_NAME = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)+")


class AuthError(Exception):
    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class Principal:
    """The authenticated user of a request and the key its CSRF token is bound to."""

    def __init__(self, user: User, csrf_key: str) -> None:
        self.user = user
        self.csrf_key = csrf_key



class Portal:
    """What the routes share: settings, database, image store, verifier, templates."""

    def __init__(self, settings: PortalSettings, engine: Engine, images: ImageStore,
                 verifier: Optional[OidcVerifier], s3_client: Any = None) -> None:
        self.settings = settings
        self.engine = engine
        self.factory = session_factory(engine)
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

    def authenticate_oidc(self, request: Request, session: Session) -> Principal:
        """ALB OIDC: the verified claims create or update the user (Cognito groups are its role)."""
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

    def _session_id(self, request: Request) -> str:
        session_id = S.unsign_session(self.secret, request.cookies.get(S.SESSION_COOKIE))
        if session_id is None:
            raise AuthError("not logged in")
        return session_id

    @staticmethod
    def _session_principal(found: Optional[tuple[Any, ...]], key: str) -> Principal:
        """The principal of a ``_SESSION_USER`` row; refused when the session is gone or expired, or the
        account disabled (read from the database on every request, so logout takes effect at once)."""
        if found is None or found[4] < utcnow():
            raise AuthError("session expired; log in again")
        if not found[3]:
            raise AuthError("account disabled", 403)
        # A detached row of what the routes read (id, name, role); nothing writes through it.
        return Principal(User(id=found[0], name=found[1], role=found[2], active=True), key)

    def authenticate_local(self, request: Request) -> Principal:
        """The signed session cookie: one SELECT of the session and its user, outside any transaction."""
        session_id = self._session_id(request)
        return self._session_principal(one_row(self.engine, _SESSION_LOOKUP, {"sid": session_id}),
                                       "session|" + session_id)

    def item_read(self, request: Request, item_id: int, what: str, prefetch: Optional[str] = None, *,
                  missing_ok: bool = False) -> Any:
        """``what`` of leasing.ITEM_READS of ``item_id`` for the request's user, after authenticating it
        (locally: session, user and item in one statement); NotFound when the item is missing or not
        theirs (the same answer, so other jobs' item ids are not confirmed), or None if ``missing_ok``.
        ``prefetch``: the token a task offered for the item (security.prefetch_token), letting an
        annotator read it early."""
        params: dict[str, Any] = {"item": item_id, "early": False}
        if self.settings.auth_mode == "local":
            session_id = self._session_id(request)
            key = "session|" + session_id
            params["early"] = bool(prefetch) and S.prefetch_ok(self.secret, key, item_id, prefetch)
            found = one_row(self.engine, _SESSION_ITEM[what], {"sid": session_id, **params})
            self._session_principal(found, key)
            value = found[5]  # type: ignore[index]
        else:
            principal = self.authenticate_alone(request)
            params["early"] = principal.user.role == "annotator" and S.prefetch_ok(
                self.secret, principal.csrf_key, item_id, prefetch)
            found = one_row(self.engine, _USER_ITEM[what], {"user": principal.user.id, **params})
            value = found and found[0]
        if value is None and not missing_ok:
            raise J.NotFound(f"item {item_id}: not found")
        return value

    def authenticate_alone(self, request: Request) -> Principal:
        """The request's principal outside the route's transaction: locally one SELECT without
        BEGIN/COMMIT; with alb-oidc in a transaction (users are created and updated from the claims)."""
        if self.settings.auth_mode == "local":
            return self.authenticate_local(request)
        with self.tx() as session:
            return self.authenticate_oidc(request, session)

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
