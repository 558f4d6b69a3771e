"""Users (admin): list, add, set role, disable, reset a password (local mode), and the users page."""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Depends, Path as PathParam, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from labeling.portal import admin as A
from labeling.portal import jobs as J
from labeling.portal.deps import get_portal, role, tx
from labeling.portal.models import ROLES
from labeling.portal.security import MIN_PASSWORD_LENGTH, hash_password

router = APIRouter()
ROLE_PATTERN = "^(" + "|".join(ROLES) + ")$"


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    active: bool
    local_password: bool = Field(description="has a local password (local mode)")


class UserIn(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: str = Field(pattern=ROLE_PATTERN)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class UserChange(BaseModel):
    role: Optional[str] = Field(default=None, pattern=ROLE_PATTERN)
    active: Optional[bool] = None


class PasswordIn(BaseModel):
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)


def _out(user: Any) -> UserOut:
    return UserOut(id=user.id, name=user.name, role=user.role, active=user.active,
                   local_password=user.password_hash is not None)


def _local_only(request: Request) -> None:
    if get_portal(request).settings.auth_mode != "local":
        raise J.Conflict("users and passwords are managed in the Cognito user pool in single sign-on mode")


@router.get("/api/users", tags=["users"], response_model=list[UserOut])
def list_users(request: Request, _: Any = Depends(role("admin"))) -> list[UserOut]:
    with tx(request) as session:
        return [_out(u) for u in A.list_users(session)]


@router.post("/api/users", tags=["users"], status_code=201, response_model=UserOut)
def add_user(request: Request, body: UserIn, _: Any = Depends(role("admin"))) -> UserOut:
    _local_only(request)
    hashed = hash_password(body.password)
    with tx(request) as session:
        return _out(J.add_user(session, body.name, body.role, hashed))


@router.patch("/api/users/{user_id}", tags=["users"], response_model=UserOut)
def change_user(request: Request, body: UserChange, user_id: int = PathParam(ge=1, le=2**31 - 1),
                principal: Any = Depends(role("admin"))) -> UserOut:
    with tx(request) as session:
        user = A.get_user(session, user_id)
        return _out(A.update_user(session, principal.user, user, role=body.role, active=body.active))


@router.post("/api/users/{user_id}/password", tags=["users"], response_model=UserOut)
def reset_password(request: Request, body: PasswordIn, user_id: int = PathParam(ge=1, le=2**31 - 1),
                   _: Any = Depends(role("admin"))) -> UserOut:
    _local_only(request)
    hashed = hash_password(body.password)
    with tx(request) as session:
        return _out(A.set_password(session, A.get_user(session, user_id), hashed))


@router.get("/admin/users", response_class=HTMLResponse, include_in_schema=False)
def users_page(request: Request, principal: Any = Depends(role("admin"))):
    portal = get_portal(request)
    with tx(request) as session:
        users = A.list_users(session)
    return portal.page("users.html", principal, users=users, roles=ROLES,
                       data={"root": portal.root, "csrf": portal.csrf(principal), "mode": "users",
                             "local": portal.settings.auth_mode == "local"})
