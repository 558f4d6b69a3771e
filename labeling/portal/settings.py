"""Portal settings, read once from the environment (the names agreed with the ECS component).

Locally and on ECS the same variables configure the service (see the table in
the ``labeling/portal`` package docstring); secrets (DB password, session secret,
Orthanc password, de-identification salt) come from ECS ``secrets`` in the cloud and from 0600
files written by :mod:`labeling.portal.local` on a laptop — never from the command line.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional

from labeling.dicom.deidentify import DEV_SALT, salt_setting
from labeling.portal import names as N

AUTH_MODES = ("local", "alb-oidc")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "dicom-annotate-portal"


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable and what is wrong."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name}: {env[name]!r} is not a boolean (true/false)")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a number") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class PortalSettings:
    """Everything the service needs. ``repr`` never shows a secret."""

    db_host: str = "127.0.0.1"
    db_port: int = 5432
    db_name: str = "portal"
    db_user: str = "portal"
    db_password: str = field(default="", repr=False)
    db_sslmode: str = "prefer"
    db_create: bool = False
    auth_mode: str = "local"
    oidc_region: Optional[str] = None
    oidc_alb_arn: Optional[str] = None
    cognito_user_pool_id: Optional[str] = None
    cognito_client_id: Optional[str] = None
    session_secret: str = field(default="", repr=False)
    session_max_age_s: int = 12 * 3600
    cookie_secure: bool = True
    root_path: str = ""
    orthanc_url: Optional[str] = None
    orthanc_username: Optional[str] = None
    orthanc_password: str = field(default="", repr=False)
    orthanc_secret_arn: Optional[str] = None
    deidentify: bool = True
    deidentify_salt: bytes = field(default=DEV_SALT, repr=False)
    deidentify_salt_secret_arn: Optional[str] = None
    cache_dir: Path = DEFAULT_CACHE_DIR
    export_bucket: Optional[str] = None
    export_kms_key_id: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8000
    lease_seconds: int = 15 * 60
    agreement_threshold: float = 0.6
    login_max_failures: int = 5
    login_window_s: int = 300
    db_pool_size: int = 10
    max_body_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.auth_mode not in AUTH_MODES:
            raise SettingsError(f"{N.AUTH_MODE}: {self.auth_mode!r} is not one of {', '.join(AUTH_MODES)}")
        if self.db_sslmode not in SSL_MODES:
            raise SettingsError(f"{N.DB_SSLMODE}: {self.db_sslmode!r} is not one of {', '.join(SSL_MODES)}")
        if self.root_path and (not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", self.root_path)
                               or any(part in (".", "..") for part in self.root_path.split("/"))):
            raise SettingsError(f"{N.ROOT_PATH}: {self.root_path!r} must look like '/portal' "
                                "(a leading slash, no trailing slash)")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", self.db_name):
            raise SettingsError(f"{N.DB_NAME}: {self.db_name!r} is not a plain database name")
        if self.auth_mode == "alb-oidc":
            missing = [name for name, value in (
                (N.OIDC_REGION, self.oidc_region), (N.OIDC_ALB_ARN, self.oidc_alb_arn),
                (N.COGNITO_USER_POOL_ID, self.cognito_user_pool_id),
                (N.COGNITO_CLIENT_ID, self.cognito_client_id)) if not value]
            if missing:
                raise SettingsError(f"{N.AUTH_MODE}=alb-oidc needs {', '.join(missing)}")
            if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", self.oidc_region or ""):
                raise SettingsError(f"{N.OIDC_REGION}: {self.oidc_region!r} is not an AWS region")
        # A session cookie without Secure may only travel over plain http on loopback.
        if not self.cookie_secure and not is_loopback(self.host):
            raise SettingsError(f"{N.COOKIE_SECURE}=false is allowed only when {N.HOST} is a loopback "
                                f"address (got {self.host!r})")
        # Per-item agreement is a kappa contribution (can be negative) or a mean IoU: -1..1.
        if not -1.0 <= self.agreement_threshold <= 1.0:
            raise SettingsError(f"{N.AGREEMENT_THRESHOLD}: {self.agreement_threshold} is outside -1..1")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "PortalSettings":
        env = os.environ if environ is None else environ
        return cls(
            db_host=env.get(N.DB_HOST) or "127.0.0.1",
            db_port=_int(env, N.DB_PORT, 5432, 1),
            db_name=env.get(N.DB_NAME) or "portal",
            db_user=env.get(N.DB_USER) or "portal",
            db_password=env.get(N.DB_PASSWORD, ""),
            db_sslmode=env.get(N.DB_SSLMODE) or "prefer",
            db_create=_flag(env, N.DB_CREATE, False),
            auth_mode=env.get(N.AUTH_MODE) or "local",
            oidc_region=env.get(N.OIDC_REGION) or None,
            oidc_alb_arn=env.get(N.OIDC_ALB_ARN) or None,
            cognito_user_pool_id=env.get(N.COGNITO_USER_POOL_ID) or None,
            cognito_client_id=env.get(N.COGNITO_CLIENT_ID) or None,
            session_secret=env.get(N.SESSION_SECRET, ""),
            session_max_age_s=_int(env, N.SESSION_MAX_AGE, 12 * 3600, 60),
            cookie_secure=_flag(env, N.COOKIE_SECURE, True),
            root_path=(env.get(N.ROOT_PATH) or "").rstrip("/"),
            orthanc_url=(env.get(N.ORTHANC_URL) or "").rstrip("/") or None,
            orthanc_username=env.get(N.ORTHANC_USERNAME) or None,
            orthanc_password=env.get(N.ORTHANC_PASSWORD, ""),
            orthanc_secret_arn=env.get(N.ORTHANC_SECRET_ARN) or None,
            deidentify=_flag(env, N.DEIDENTIFY, True),
            deidentify_salt=salt_setting(env.get(N.DEIDENTIFY_SALT)),
            deidentify_salt_secret_arn=env.get(N.DEIDENTIFY_SALT_SECRET_ARN) or None,
            cache_dir=Path(env.get(N.CACHE_DIR) or DEFAULT_CACHE_DIR),
            export_bucket=env.get(N.EXPORT_BUCKET) or None,
            export_kms_key_id=env.get(N.EXPORT_KMS_KEY_ID) or None,
            host=env.get(N.HOST) or "127.0.0.1",
            port=_int(env, N.PORT, 8000, 0),
            lease_seconds=_int(env, N.LEASE_SECONDS, 15 * 60, 1),
            agreement_threshold=_float(env, N.AGREEMENT_THRESHOLD, 0.6),
            login_max_failures=_int(env, N.LOGIN_MAX_FAILURES, 5, 1),
            login_window_s=_int(env, N.LOGIN_WINDOW_S, 300, 1),
            db_pool_size=_int(env, N.DB_POOL_SIZE, 10, 1),
            max_body_bytes=_int(env, N.MAX_BODY_BYTES, 1024 * 1024, 1024),
        )

    def with_(self, **changes: object) -> "PortalSettings":
        return replace(self, **changes)  # type: ignore[arg-type]

    def require_session_secret(self) -> bytes:
        if self.auth_mode == "local" and len(self.session_secret) < 32:
            raise SettingsError(f"{N.SESSION_SECRET}: must be set to at least 32 random characters "
                                "(an ECS secret in the cloud; locally `source <stack workdir>/portal.env`, see labeling/portal/local.py)")
        # alb-oidc still signs CSRF tokens; the secret may then be shorter but not empty.
        if not self.session_secret:
            raise SettingsError(f"{N.SESSION_SECRET}: not set")
        return self.session_secret.encode("utf-8")
