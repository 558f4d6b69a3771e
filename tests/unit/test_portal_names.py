"""The portal's environment names are defined once (labeling/portal/names.py) and agree everywhere:
the settings read every one, the ECS component sets only those, and the names module stays import-light
(the Pulumi program imports it)."""

from __future__ import annotations

import subprocess
import sys
from typing import Iterator, Mapping

from components.portal import portal_container_definitions
from labeling.portal import names as N
from labeling.portal.settings import PortalSettings

# Read by the CLI (uvicorn's worker count), not a PortalSettings field.
CLI_ONLY = {N.WORKERS}


class Reads(Mapping[str, str]):
    """An empty environment that records which names were asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def get(self, key, default=None):  # type: ignore[override]
        self.asked.add(key)
        return default

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_settings_read_every_name_and_no_other():
    env = Reads()
    PortalSettings.from_env(env)
    assert env.asked == N.ALL - CLI_ONLY


def test_component_sets_only_portal_names_and_the_settings_accept_them():
    [container] = portal_container_definitions(
        image="img", region="eu-west-1", log_group="lg", db_secret_arn="arn:db", session_secret_arn="arn:s",
        db_host="db.internal", db_user="portal_app", user_pool_id="eu-west-1_abc", client_id="cid",
        alb_arn="arn:aws:elasticloadbalancing:eu-west-1:1:loadbalancer/app/x/y", orthanc_url="http://o:8042",
        orthanc_secret_arn="arn:o", salt_secret_arn="arn:salt", export_bucket="bucket", export_kms_key_id="kms",
        deidentify=True, db_pool_size=5)
    env = {e["name"]: e["value"] for e in container["environment"]}
    secrets = {s["name"] for s in container["secrets"]}
    assert set(env) - {"AWS_DEFAULT_REGION"} <= N.ALL and secrets <= N.ALL
    settings = PortalSettings.from_env({**env, N.SESSION_SECRET: "x" * 40})
    assert (settings.auth_mode, settings.root_path, settings.db_pool_size) == ("alb-oidc", "/portal", 5)


def test_names_module_imports_nothing_heavy():
    probe = ("import sys, labeling.portal.names; "
             "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'pydantic', 'starlette') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_engine_opens_the_overflow_the_component_budgets():
    # components/portal.py sizes PORTAL_DB_POOL_SIZE so pool + N.DB_MAX_OVERFLOW per task fits RDS.
    from components.portal import PORTAL_MAX_OVERFLOW
    from labeling.portal.db import make_engine

    engine = make_engine(PortalSettings(db_pool_size=3))  # no connection is opened until a checkout
    try:
        assert PORTAL_MAX_OVERFLOW == N.DB_MAX_OVERFLOW
        # At most size() + max overflow connections: all of them kept in the pool.
        assert engine.pool.size() == 3 + N.DB_MAX_OVERFLOW and engine.pool._max_overflow == 0
    finally:
        engine.dispose()
