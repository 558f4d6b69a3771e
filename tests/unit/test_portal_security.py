"""Portal settings rules, password hashing, session signing and CSRF tokens (no database)."""

from __future__ import annotations

import pytest

from labeling.portal import security as S
from labeling.portal.settings import PortalSettings, SettingsError


def test_defaults_from_empty_environment():
    settings = PortalSettings.from_env({})
    assert (settings.db_name, settings.db_sslmode, settings.auth_mode, settings.root_path) == \
        ("portal", "prefer", "local", "")
    assert settings.deidentify is True and settings.cookie_secure is True
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_ecs_style_environment():
    env = {"PORTAL_DB_HOST": "db.internal", "PORTAL_DB_PORT": "5432", "PORTAL_DB_USER": "master",
           "PORTAL_DB_PASSWORD": "s3cret!", "PORTAL_DB_SSLMODE": "require", "PORTAL_DB_CREATE": "true",
           "PORTAL_AUTH_MODE": "alb-oidc", "PORTAL_OIDC_REGION": "eu-west-1",
           "PORTAL_OIDC_ALB_ARN": "arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/x/y",
           "PORTAL_COGNITO_USER_POOL_ID": "eu-west-1_x", "PORTAL_COGNITO_CLIENT_ID": "c",
           "PORTAL_ROOT_PATH": "/portal/", "PORTAL_HOST": "0.0.0.0", "PORTAL_DEIDENTIFY": "false"}
    settings = PortalSettings.from_env(env)
    assert settings.root_path == "/portal" and settings.db_create and not settings.deidentify
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize("env,match", [
    ({"PORTAL_COOKIE_SECURE": "false", "PORTAL_HOST": "0.0.0.0"}, "loopback"),
    ({"PORTAL_AUTH_MODE": "alb-oidc"}, "PORTAL_OIDC_REGION"),
    ({"PORTAL_AUTH_MODE": "kerberos"}, "PORTAL_AUTH_MODE"),
    ({"PORTAL_ROOT_PATH": "portal"}, "PORTAL_ROOT_PATH"),
    ({"PORTAL_ROOT_PATH": "/a/../b"}, "PORTAL_ROOT_PATH"),
    ({"PORTAL_DB_NAME": 'x"; DROP'}, "PORTAL_DB_NAME"),
    ({"PORTAL_DB_PORT": "five"}, "PORTAL_DB_PORT"),
    ({"PORTAL_DEIDENTIFY": "maybe"}, "PORTAL_DEIDENTIFY"),
    ({"PORTAL_DB_SSLMODE": "sometimes"}, "PORTAL_DB_SSLMODE"),
])
def test_bad_settings_name_the_variable(env, match):
    with pytest.raises(SettingsError, match=match):
        PortalSettings.from_env(env)


def test_insecure_cookie_allowed_on_loopback_only():
    assert PortalSettings.from_env({"PORTAL_COOKIE_SECURE": "false", "PORTAL_HOST": "127.0.0.1"}).cookie_secure is False


def test_short_session_secret_refused():
    with pytest.raises(SettingsError, match="PORTAL_SESSION_SECRET"):
        PortalSettings(session_secret="short").require_session_secret()


def test_passwords_argon2():
    hashed = S.hash_password("long enough pw")
    assert hashed.startswith("$argon2id$")
    assert S.verify_password(hashed, "long enough pw")
    assert not S.verify_password(hashed, "long enough pW")
    assert not S.verify_password(None, "anything")
    with pytest.raises(ValueError):
        S.hash_password("short")


def test_session_cookie_signature():
    secret = b"k" * 40
    sid = S.new_session_id()
    cookie = S.sign_session(secret, sid)
    assert S.unsign_session(secret, cookie) == sid
    assert S.unsign_session(b"x" * 40, cookie) is None
    assert S.unsign_session(secret, S.new_session_id() + "." + cookie.split(".")[1]) is None
    assert S.unsign_session(secret, sid) is None and S.unsign_session(secret, None) is None


def test_csrf_token_bound_to_session():
    secret = b"k" * 40
    token = S.csrf_token(secret, "session|a")
    assert S.csrf_ok(secret, "session|a", token)
    assert not S.csrf_ok(secret, "session|b", token)
    assert not S.csrf_ok(secret, "session|a", None) and not S.csrf_ok(secret, None, token)
