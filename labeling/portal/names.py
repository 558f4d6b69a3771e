"""The portal's environment names, defined once: read by :meth:`labeling.portal.settings.PortalSettings.from_env`,
written by :mod:`labeling.portal.local` (``portal.env``) and by :mod:`components.portal` (the ECS task's
``environment`` and ``secrets``). Import-light on purpose (no FastAPI, SQLAlchemy or pydantic): the
Pulumi program imports it."""

DB_HOST = "PORTAL_DB_HOST"
DB_PORT = "PORTAL_DB_PORT"
DB_NAME = "PORTAL_DB_NAME"
DB_USER = "PORTAL_DB_USER"
DB_PASSWORD = "PORTAL_DB_PASSWORD"  # secret
DB_SSLMODE = "PORTAL_DB_SSLMODE"
DB_CREATE = "PORTAL_DB_CREATE"
DB_POOL_SIZE = "PORTAL_DB_POOL_SIZE"
AUTH_MODE = "PORTAL_AUTH_MODE"
OIDC_REGION = "PORTAL_OIDC_REGION"
OIDC_ALB_ARN = "PORTAL_OIDC_ALB_ARN"
COGNITO_USER_POOL_ID = "PORTAL_COGNITO_USER_POOL_ID"
COGNITO_CLIENT_ID = "PORTAL_COGNITO_CLIENT_ID"
SESSION_SECRET = "PORTAL_SESSION_SECRET"  # secret
SESSION_MAX_AGE = "PORTAL_SESSION_MAX_AGE"
COOKIE_SECURE = "PORTAL_COOKIE_SECURE"
ROOT_PATH = "PORTAL_ROOT_PATH"
ORTHANC_URL = "ORTHANC_URL"
ORTHANC_USERNAME = "ORTHANC_USERNAME"
ORTHANC_PASSWORD = "ORTHANC_PASSWORD"  # secret
ORTHANC_SECRET_ARN = "ORTHANC_SECRET_ARN"
DEIDENTIFY = "PORTAL_DEIDENTIFY"
DEIDENTIFY_SALT = "PORTAL_DEIDENTIFY_SALT"  # secret
DEIDENTIFY_SALT_SECRET_ARN = "DEIDENTIFY_SALT_SECRET_ARN"
CACHE_DIR = "PORTAL_CACHE_DIR"
EXPORT_BUCKET = "PORTAL_EXPORT_BUCKET"
EXPORT_KMS_KEY_ID = "PORTAL_EXPORT_KMS_KEY_ID"
HOST = "PORTAL_HOST"
PORT = "PORTAL_PORT"
WORKERS = "PORTAL_WORKERS"
LEASE_SECONDS = "PORTAL_LEASE_SECONDS"
AGREEMENT_THRESHOLD = "PORTAL_AGREEMENT_THRESHOLD"
LOGIN_MAX_FAILURES = "PORTAL_LOGIN_MAX_FAILURES"
LOGIN_WINDOW_S = "PORTAL_LOGIN_WINDOW_S"
MAX_BODY_BYTES = "PORTAL_MAX_BODY_BYTES"

# Every name above (a test checks that each variable the component or local.py sets is one of them).
ALL = frozenset(value for key, value in dict(globals()).items() if key.isupper())

# Connections one portal worker may open beyond PORTAL_DB_POOL_SIZE: labeling/portal/db.py's engine
# opens them, components/portal.py budgets them under RDS max_connections.
DB_MAX_OVERFLOW = 10

EXPORT_PREFIX = "portal-exports/"  # the portal's exports in the annotation bucket (its IAM grant too)
