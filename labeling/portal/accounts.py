"""Users of the portal (local and OIDC): lookup and creation with the name and role rules."""

from __future__ import annotations

import re
from typing import Optional

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labeling.portal.errors import Conflict, Invalid
from labeling.portal.models import User


def find_user(session: Session, name: str) -> Optional[User]:
    return session.scalars(select(User).where(User.name == name)).first()


def add_user(session: Session, name: str, role: str, password_hash: Optional[str]) -> User:
    from labeling.portal.models import ROLES

    if role not in ROLES:
        raise Invalid(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@+\-]{0,127}", name or ""):
        raise Invalid(f"user name {name!r}: letters, digits and . _ @ + - (at most 128 characters)")
    if find_user(session, name) is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, role=role, password_hash=password_hash, active=True)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"user {name!r} already exists") from None
    return user
