"""schemathesis against the portal's own OpenAPI schema (in-process ASGI, real PostgreSQL + Orthanc):
no generated request — anonymous, or logged in as an admin, an annotator or a reviewer with a valid
CSRF token — gets a 5xx.

The fuzzed app uses a database of its own (``portal_fuzz``), so random ids never touch the jobs of
the other tests. Examples per operation are bounded so the whole module runs in well under a minute.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from labeling.portal.app import create_app
from labeling.portal.db import make_engine, migrate
from labeling.portal.geometry import checked_geometry
from tests.integration.portal_fixtures import *  # noqa: F401,F403 - fixtures
from tests.integration.portal_fixtures import Browserish, PortalUser

pytestmark = pytest.mark.integration
EXAMPLES = 12


@pytest.fixture(scope="module")
def fuzz_app(portal_settings):
    fuzz_settings = portal_settings.with_(db_name="portal_fuzz", db_create=True)
    migrate(fuzz_settings)
    engine = make_engine(fuzz_settings)
    yield create_app(fuzz_settings, engine=engine)
    engine.dispose()


@pytest.fixture(scope="module")
def fuzz_auths(fuzz_app, client):
    """Cookie + CSRF header of an admin, an annotator and a reviewer, and a job whose ids are small
    numbers (fresh database: job 1, items 1..3), so generated ids often name real objects."""
    from pydicom.uid import generate_uid

    from sqlalchemy import select

    from labeling.portal import jobs as J
    from labeling.portal.db import session_factory, transaction
    from labeling.portal.models import Job
    from labeling.portal.security import hash_password
    from labeling.contracts.schema import LabelSchema
    from tests.integration.dicom_files import dicom_bytes
    from tests.integration.portal_fixtures import SCHEMA, manifest_lines

    factory = session_factory(fuzz_app.state.portal.engine)
    study, series = generate_uid(), generate_uid()
    ids = [client.upload(dicom_bytes(patient_id="FUZZ", study_uid=study, series_uid=series, size=16,
                                     number=n + 1)).instance_id for n in range(3)]
    auths = {}
    with transaction(factory) as session:
        if session.scalar(select(Job.id).where(Job.name == "fuzz")) is None:
            J.create_job(session, name="fuzz", schema=LabelSchema.from_dict(SCHEMA), lines=manifest_lines(ids),
                         geometry=checked_geometry(client, ids), annotators_per_item=2)
        for role in ("admin", "annotator", "reviewer"):
            if J.find_user(session, f"fuzz-{role}") is None:
                J.add_user(session, f"fuzz-{role}", role, hash_password("fuzz password 123"))
    for role in ("admin", "annotator", "reviewer"):
        browser = Browserish(fuzz_app, PortalUser(f"fuzz-{role}", role, "fuzz password 123"))
        if role == "annotator":  # hold a lease, so assignment and image routes have something to find
            browser.post("/api/jobs/1/next")
        auths[role] = {"cookies": {"portal_session": browser.client.cookies.get("portal_session")},
                       "headers": {"X-CSRF-Token": browser.csrf}}
    return auths


def test_no_server_errors(fuzz_app, fuzz_auths):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15  # the JSON API is in the schema
    failures: list[str] = []
    calls = 0
    statuses: dict[tuple[bool, int], int] = {}
    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case) -> None:
            nonlocal calls
            for auth in ({}, *fuzz_auths.values()):
                calls += 1
                response = case.call(headers={**(case.headers or {}), **auth.get("headers", {})},
                                     cookies=auth.get("cookies"))
                statuses[(bool(auth), response.status_code // 100)] = statuses.get(
                    (bool(auth), response.status_code // 100), 0) + 1
                if response.status_code >= 500:
                    failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                    f"{response.text[:200]}")

        check()
    assert calls > len(operations) * 4
    # Logged in, the fuzzer gets past authentication (some 2xx); anonymous, only /healthz answers 2xx.
    assert statuses.get((True, 2), 0) > 0 and statuses.get((False, 2), 0) <= EXAMPLES * 2  # healthz only
    print(sorted(statuses.items()))
    assert not failures, "\n".join(failures[:20])
