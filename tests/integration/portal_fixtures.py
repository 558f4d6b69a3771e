"""Fixtures for the portal's tier-2 tests: the portal app on the session's real PostgreSQL + Orthanc.

The portal database ``portal`` lives on the session stack's PostgreSQL (created by ``migrate`` with
PORTAL_DB_CREATE, as ``make demo`` does). Tests share it, so each one makes its own users, job
names and DICOM instances (fresh UIDs) and asserts only on those.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from labeling.orthanc.local_stack import LocalStack
from labeling.manifest.build import ManifestLine
from labeling.orthanc.client import OrthancClient
from labeling.portal.app import create_app
from labeling.portal.db import make_engine, migrate, session_factory, transaction
from labeling.portal import jobs as J
from labeling.portal.local import portal_env
from labeling.portal.security import hash_password
from labeling.portal.settings import PortalSettings
from labeling.contracts.schema import LabelSchema
from tests.integration.dicom_files import dicom_bytes

SCHEMA = {
    "name": "portal-it", "task_type": "classification+roi",
    "labels": [{"name": "Opacity", "shapes": ["rectangle", "ellipse"]},
               {"name": "Device", "shapes": ["polygon", "rectangle"]},
               {"name": "Effusion", "shapes": ["rectangle"]}],
    "instructions": "Answer every label.", "annotators_per_item": 2, "required": {"labels": True},
}
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def portal_settings(local_stack: LocalStack) -> PortalSettings:
    cache = Path(tempfile.mkdtemp(prefix="portal-it-cache-"))
    env = portal_env(local_stack.workdir)
    env["PORTAL_CACHE_DIR"] = str(cache)
    settings = PortalSettings.from_env(env)
    migrate(settings)
    return settings


@pytest.fixture(scope="session")
def portal_engine(portal_settings: PortalSettings):
    engine = make_engine(portal_settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def portal_db(portal_engine):
    return session_factory(portal_engine)


@pytest.fixture(scope="session")
def portal_app(portal_settings: PortalSettings, portal_engine):
    return create_app(portal_settings, engine=portal_engine)


@dataclass
class PortalUser:
    name: str
    role: str
    password: str = PASSWORD


@pytest.fixture()
def make_user(portal_db) -> Callable[[str], PortalUser]:
    def make(role: str, prefix: Optional[str] = None) -> PortalUser:
        name = f"{prefix or role}-{secrets.token_hex(4)}"
        with transaction(portal_db) as session:
            J.add_user(session, name, role, hash_password(PASSWORD))
        return PortalUser(name, role)

    return make


class Browserish:
    """A TestClient logged in as one user, adding the CSRF header to state-changing calls."""

    def __init__(self, app: Any, user: Optional[PortalUser] = None) -> None:
        self.client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
        self.csrf = ""
        self.user = user
        if user is not None:
            self.login(user.name, user.password)

    def login(self, name: str, password: str):
        page = self.client.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        response = self.client.post("/login", data={"username": name, "password": password, "csrf_token": token},
                                    follow_redirects=False)
        if response.status_code == 303:
            self.csrf = self.client.get("/api/me").json()["csrf"]
        return response

    def get(self, path: str, **kw: Any):
        return self.client.get(path, **kw)

    def post(self, path: str, json: Any = None, *, csrf: Optional[str] = None, **kw: Any):
        headers = {"X-CSRF-Token": self.csrf if csrf is None else csrf}
        return self.client.post(path, json=json, headers=headers, **kw)


@pytest.fixture()
def as_user(portal_app) -> Callable[[Optional[PortalUser]], Browserish]:
    return lambda user=None: Browserish(portal_app, user)


@pytest.fixture()
def upload_instances(client: OrthancClient) -> Callable[[int], list[str]]:
    """``upload_instances(n)``: n fresh instances (one series) stored in the session's Orthanc."""

    def upload(count: int, size: int = 32) -> list[str]:
        patient, study, series = f"PORTAL-{secrets.token_hex(3)}", generate_uid(), generate_uid()
        return [client.upload(dicom_bytes(patient_id=patient, study_uid=study, series_uid=series, size=size,
                                          number=n + 1)).instance_id for n in range(count)]

    return upload


def manifest_lines(ids: list[str], schema: dict[str, Any] = SCHEMA, **extra: Any) -> list[ManifestLine]:
    names = [label["name"] for label in schema["labels"]]
    return [ManifestLine(source=i, labels=tuple(names), task_type=schema["task_type"], schema=schema["name"],
                         extra=dict(extra)) for i in ids]


@pytest.fixture()
def geometry_of(client: OrthancClient) -> Callable[[list[str]], dict]:
    """``geometry_of(ids)``: what job creation records, read from the session's Orthanc."""
    from labeling.portal.geometry import checked_geometry

    return lambda ids: checked_geometry(client, ids)


@pytest.fixture()
def make_job(portal_db, upload_instances, geometry_of) -> Callable[..., tuple[int, list[str]]]:
    """``make_job(n_items, k=2, **job options)`` → (job id, Orthanc ids in item order)."""

    def make(count: int = 3, k: int = 2, schema: dict[str, Any] = SCHEMA, ids: Optional[list[str]] = None,
             **options: Any) -> tuple[int, list[str]]:
        ids = ids or upload_instances(count)
        geometry = geometry_of(ids)
        with transaction(portal_db) as session:
            job = J.create_job(session, name=f"it-{secrets.token_hex(5)}", schema=LabelSchema.from_dict(schema),
                               lines=manifest_lines(ids, schema), geometry=geometry, annotators_per_item=k,
                               **options)
            return job.id, ids

    return make


def answer(opacity: bool, device: bool = False, effusion: bool = False, rois: Optional[list] = None,
           size: int = 32) -> dict[str, Any]:
    return {"labels": [{"name": "Opacity", "present": opacity}, {"name": "Device", "present": device},
                       {"name": "Effusion", "present": effusion}],
            "rois": rois or [], "image": {"rows": size, "columns": size, "frame": 0}}


__all__ = ["SCHEMA", "PASSWORD", "PortalUser", "Browserish", "answer", "manifest_lines", "portal_settings",
           "portal_engine", "portal_db", "portal_app", "make_user", "as_user", "upload_instances", "geometry_of", "make_job"]

