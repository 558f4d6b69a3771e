"""The portal's refusals: each carries the HTTP status the API answers with (labeling/portal/app.py)."""

from __future__ import annotations


class PortalError(Exception):
    """A request the portal refuses; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(PortalError):
    status = 404


class Forbidden(PortalError):
    status = 403


class Conflict(PortalError):
    status = 409


class Invalid(PortalError):
    status = 422
