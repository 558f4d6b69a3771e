"""Local authentication: argon2 password hashes, signed session cookies, CSRF tokens, login limits.

* Passwords: argon2id (argon2-cffi defaults, RFC 9106 "second recommended" parameters); a hash made
  with older parameters is re-hashed at the next successful login.
* Session cookie ``portal_session``: ``<session id>.<HMAC-SHA256(secret, session id)>`` (base64url).
  The id is 32 random bytes and names a row of ``sessions`` (so logout and expiry are server-side);
  the signature lets a forged or altered cookie be refused before any database read. Flags: HttpOnly,
  SameSite=Strict, Secure (only a loopback http deployment may turn it off, see settings), Path = root.
* CSRF: a token bound to the session, ``HMAC(secret, "csrf|" + session key)``, required on every
  state-changing request as the ``X-CSRF-Token`` header (JS) or the ``csrf_token`` form field
  (OWASP CSRF cheat sheet, "synchronizer token"; SameSite=Strict is the second layer). The login form,
  which has no session yet, uses a pre-session cookie the same way ("login CSRF").
* Login rate limit: at most ``login_max_failures`` failures per (user name, client address) in
  ``login_window_s``; further attempts answer 429 until the window has passed, whatever the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

SESSION_COOKIE = "portal_session"
PRELOGIN_COOKIE = "portal_prelogin"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"

_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so both paths cost one argon2 verification
# (no user-name probing by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password: at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(stored_hash: Optional[str], password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(secret: bytes, purpose: str, value: str) -> str:
    return _b64(hmac.new(secret, f"{purpose}|{value}".encode(), hashlib.sha256).digest())


def new_session_id() -> str:
    return _b64(secrets.token_bytes(32))


def sign_session(secret: bytes, session_id: str) -> str:
    return f"{session_id}.{_mac(secret, 'session', session_id)}"


def unsign_session(secret: bytes, cookie: Optional[str]) -> Optional[str]:
    """The session id in a cookie whose signature is valid, else None."""
    if not cookie or cookie.count(".") != 1 or len(cookie) > 200:
        return None
    session_id, signature = cookie.split(".")
    if hmac.compare_digest(signature, _mac(secret, "session", session_id)):
        return session_id
    return None


def csrf_token(secret: bytes, session_key: str) -> str:
    return _mac(secret, "csrf", session_key)


def csrf_ok(secret: bytes, session_key: Optional[str], token: Optional[str]) -> bool:
    if not session_key or not token:
        return False
    return hmac.compare_digest(token, csrf_token(secret, session_key))
