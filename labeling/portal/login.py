"""Local-mode login and logout: password check with a failure window per (user name, address), and
the database session that the signed cookie names (:mod:`labeling.portal.security`)."""

from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from labeling.portal import security as S
from labeling.portal.jobs import find_user
from labeling.portal.models import LoginFailure, Session as DbSession, utcnow
from labeling.portal.settings import PortalSettings


class TooManyAttempts(Exception):
    """``PORTAL_LOGIN_MAX_FAILURES`` failures within ``PORTAL_LOGIN_WINDOW_S`` for this name and address."""


def log_in(session: Session, settings: PortalSettings, username: str, password: str, address: str) -> Optional[str]:
    """A new session id for a correct password of an active user, else ``None`` (the failure is recorded).
    Raises :class:`TooManyAttempts` while the window is full, before the password is looked at."""
    now = utcnow()
    window_start = now - dt.timedelta(seconds=settings.login_window_s)
    failures = session.scalar(select(func.count(LoginFailure.id)).where(
        LoginFailure.username == username, LoginFailure.address == address,
        LoginFailure.at > window_start)) or 0
    if failures >= settings.login_max_failures:
        raise TooManyAttempts(username)
    user = find_user(session, username)
    # The hash is checked even for an unknown user (against a dummy): no timing hint that a name exists.
    ok = S.verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.active:
        session.add(LoginFailure(username=username, address=address, at=now))
        session.execute(delete(LoginFailure).where(LoginFailure.at < window_start))
        return None
    if user.password_hash and S.needs_rehash(user.password_hash):
        user.password_hash = S.hash_password(password)
    session.execute(delete(LoginFailure).where(LoginFailure.username == username, LoginFailure.address == address))
    session.execute(delete(DbSession).where(DbSession.expires_at < now))  # housekeeping
    session_id = S.new_session_id()
    session.add(DbSession(id=session_id, user_id=user.id,
                          expires_at=now + dt.timedelta(seconds=settings.session_max_age_s)))
    return session_id


def log_out(session: Session, csrf_key: str) -> None:
    """End the local session a principal's key names (single sign-on sessions end at the IdP)."""
    if csrf_key.startswith("session|"):
        session.execute(delete(DbSession).where(DbSession.id == csrf_key[len("session|"):]))
