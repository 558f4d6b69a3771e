"""How every part finds Orthanc, in one place.

Commands: ``--orthanc-url``, ``--username``, ``--password-file``, each falling back to an environment
variable (``ORTHANC_URL``, ``ORTHANC_USERNAME``, ``ORTHANC_PASSWORD``), which is what
``python -m labeling local up`` writes into ``orthanc.env`` (:func:`connection_from_args`,
:func:`orthanc_client_from_args`). The password is never taken from the command line, where other
users could read it. A person waits on a command, so its client keeps the client's own timeout and
retries.

Services (the portal on ECS, the GT pre-label Lambda, the SageMaker endpoint, the notebook): the URL
plus either a Secrets Manager secret (``ORTHANC_SECRET_ARN``, JSON ``{"username", "password"}``,
created by ``components/orthanc.py``; it wins when set) or a user and password
(:func:`resolve_connection`, :func:`orthanc_client_from_env`). A service answers a caller who can
retry, so its client retries little (:data:`SERVICE_RETRIES`) and waits :data:`SERVICE_TIMEOUT_S`.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional
from urllib.parse import urlparse


class ConnectionError_(ValueError):
    """Missing or invalid connection settings; the message names the flag and the variable."""


@dataclass(frozen=True)
class OrthancConnection:
    url: str
    username: str
    password: str

    def __repr__(self) -> str:  # never print the password
        return f"OrthancConnection(url={self.url!r}, username={self.username!r}, password='***')"


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Orthanc connection")
    group.add_argument("--orthanc-url", help="Orthanc base URL (default: $ORTHANC_URL)")
    group.add_argument("--username", help="Orthanc user (default: $ORTHANC_USERNAME)")
    group.add_argument("--password-file", type=Path,
                       help="file holding the Orthanc password (without it: the password in "
                            "$ORTHANC_PASSWORD)")


def connection_from_args(args: argparse.Namespace,
                         environ: Optional[Mapping[str, str]] = None) -> OrthancConnection:
    env = os.environ if environ is None else environ
    url = getattr(args, "orthanc_url", None) or env.get("ORTHANC_URL")
    if not url:
        raise ConnectionError_("Orthanc URL: pass --orthanc-url or set ORTHANC_URL "
                               "(`source <workdir>/orthanc.env` after `python -m labeling local up`)")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConnectionError_(f"--orthanc-url/ORTHANC_URL: {url!r} is not an http(s) URL")
    username = getattr(args, "username", None) or env.get("ORTHANC_USERNAME")
    if not username:
        raise ConnectionError_("Orthanc user: pass --username or set ORTHANC_USERNAME")
    password_file = getattr(args, "password_file", None)
    if password_file:
        try:
            password = Path(password_file).read_text().strip()
        except OSError as exc:
            raise ConnectionError_(f"--password-file {password_file}: cannot read ({exc.strerror})") from None
        if not password:
            raise ConnectionError_(f"--password-file {password_file}: the file is empty")
    else:
        password = env.get("ORTHANC_PASSWORD", "")
        if not password:
            raise ConnectionError_("Orthanc password: pass --password-file or set ORTHANC_PASSWORD")
    return OrthancConnection(url=url.rstrip("/"), username=username, password=password)


def orthanc_client_from_args(args: argparse.Namespace, environ: Optional[Mapping[str, str]] = None,
                             **client_options: Any) -> Any:
    """A command's :class:`labeling.orthanc.client.OrthancClient` from its connection flags or the
    environment (:func:`connection_from_args`); ``client_options`` (e.g. ``pool_size``) go to the client."""
    from labeling.orthanc.client import OrthancClient  # it imports this module

    return OrthancClient.from_connection(connection_from_args(args, environ), **client_options)


def credentials_from_secret(secrets_client: Any, secret_arn: str) -> tuple[str, str]:
    """(username, password) of the Orthanc secret the stack creates (JSON ``{"username", "password"}``,
    components/orthanc.py) — how the Lambdas, the portal on ECS and the SageMaker endpoint connect."""
    raw = secrets_client.get_secret_value(SecretId=secret_arn)["SecretString"]
    try:
        secret = json.loads(raw)
        username, password = secret["username"], secret["password"]
    except (ValueError, KeyError, TypeError):
        raise ConnectionError_(f"secret {secret_arn}: expected a JSON object with 'username' and 'password'") \
            from None
    if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
        raise ConnectionError_(f"secret {secret_arn}: 'username' and 'password' must be non-empty strings")
    return username, password


SERVICE_TIMEOUT_S = 30.0
"""Seconds a service waits for one Orthanc answer (the caller's request is waiting too)."""
SERVICE_RETRIES = 2
"""Retries of a service's Orthanc call: its own caller (a browser, GT, SageMaker) retries as well."""


def resolve_connection(url: Optional[str], username: Optional[str] = None, password: Optional[str] = None,
                       secret_arn: Optional[str] = None, *, secrets_client: Any = None) -> OrthancConnection:
    """The connection from a URL and either a secret (wins when given) or a user and password;
    ConnectionError_ naming the environment variable that is missing or wrong."""
    if not url:
        raise ConnectionError_("ORTHANC_URL: not set")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConnectionError_(f"ORTHANC_URL: {url!r} is not an http(s) URL")
    if secret_arn:
        if secrets_client is None:
            import boto3

            secrets_client = boto3.client("secretsmanager")
        try:
            username, password = credentials_from_secret(secrets_client, secret_arn)
        except ConnectionError_ as exc:
            raise ConnectionError_(f"ORTHANC_SECRET_ARN: {exc}") from None
    if not username or not password:
        raise ConnectionError_("Orthanc credentials: set ORTHANC_USERNAME and ORTHANC_PASSWORD, "
                               "or ORTHANC_SECRET_ARN")
    return OrthancConnection(url=url.rstrip("/"), username=username, password=password)


def orthanc_client_from_env(environ: Optional[Mapping[str, str]] = None, *, secrets_client: Any = None,
                            timeout: float = SERVICE_TIMEOUT_S, retries: int = SERVICE_RETRIES,
                            pool_size: int = 8) -> Any:
    """A service's :class:`labeling.orthanc.client.OrthancClient` from ``ORTHANC_URL`` and
    ``ORTHANC_SECRET_ARN`` or ``ORTHANC_USERNAME``/``ORTHANC_PASSWORD``."""
    from labeling.orthanc.client import OrthancClient  # it imports this module

    env = os.environ if environ is None else environ
    conn = resolve_connection(env.get("ORTHANC_URL"), env.get("ORTHANC_USERNAME"), env.get("ORTHANC_PASSWORD"),
                              env.get("ORTHANC_SECRET_ARN"), secrets_client=secrets_client)
    return OrthancClient.from_connection(conn, timeout=timeout, retries=retries, pool_size=pool_size)
