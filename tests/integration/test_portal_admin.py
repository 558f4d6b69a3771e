"""Admin in the browser's API (issue 12): jobs from an Orthanc query or an uploaded manifest with a
schema from schemas/ or uploaded; users (add, role, disable, reset password); the job page's figures."""

from __future__ import annotations

import secrets

import pytest
import yaml
from pydicom.uid import generate_uid

from tests.integration.dicom_files import dicom_bytes
from tests.integration.portal_fixtures import *  # noqa: F401,F403 - fixtures
from tests.integration.portal_fixtures import PASSWORD, SCHEMA, answer, manifest_lines

pytestmark = pytest.mark.integration


def _upload_patient(client, count: int) -> tuple[str, list[str]]:
    patient, study, series = f"ADM-{secrets.token_hex(4)}", generate_uid(), generate_uid()
    ids = [client.upload(dicom_bytes(patient_id=patient, study_uid=study, series_uid=series, size=32,
                                     number=n + 1)).instance_id for n in range(count)]
    return patient, ids


def test_job_from_orthanc_query_with_a_shipped_schema(as_user, make_user, client):
    patient, ids = _upload_patient(client, 3)
    admin = as_user(make_user("admin"))
    schemas = admin.get("/api/schemas").json()
    assert "chest-xray.yaml" in schemas
    name = f"q-{secrets.token_hex(3)}"
    created = admin.post("/api/jobs", json={"name": name, "schema_file": "chest-xray.yaml",
                                            "query": {"patient_id": patient, "limit": 2}, "annotators_per_item": 1})
    assert created.status_code == 201, created.text
    assert created.json()["items"] == 2
    none = admin.post("/api/jobs", json={"name": name + "x", "schema_file": "chest-xray.yaml",
                                         "query": {"patient_id": f"NOBODY-{secrets.token_hex(4)}"}})
    assert none.status_code == 422 and "no image in Orthanc matches" in none.json()["detail"]
    bad_date = admin.post("/api/jobs", json={"name": name + "y", "schema_file": "chest-xray.yaml",
                                             "query": {"study_date_from": "2026-13-40"}})
    # Named as the form names it, not as the CLI flag the builder's message uses.
    assert bad_date.status_code == 422 and bad_date.json()["detail"].startswith("query: study date from: "), bad_date.text
    escape = admin.post("/api/jobs", json={"name": name + "z", "schema_file": "../pyproject.toml",
                                           "query": {"patient_id": patient}})
    assert escape.status_code == 422 and "schema_file" in escape.json()["detail"]
    both = admin.post("/api/jobs", json={"name": name + "w", "schema_file": "chest-xray.yaml", "schema": SCHEMA,
                                         "query": {"patient_id": patient}})
    assert both.status_code == 422 and "exactly one" in both.json()["detail"]
    assert annotator_refused(as_user, make_user)


def annotator_refused(as_user, make_user) -> bool:
    annotator = as_user(make_user("annotator"))
    return (annotator.get("/api/schemas").status_code == 403
            and annotator.get("/admin/jobs/new", headers={"accept": "text/html"}).status_code == 403)


def test_job_from_uploaded_manifest_and_schema_text(as_user, make_user, upload_instances):
    ids = upload_instances(2)
    admin = as_user(make_user("admin"))
    lines = [line.to_dict() for line in manifest_lines(ids)]
    created = admin.post("/api/jobs", json={"name": f"up-{secrets.token_hex(3)}", "schema_text": yaml.safe_dump(SCHEMA),
                                            "manifest": lines})
    assert created.status_code == 201 and created.json()["items"] == 2
    broken = admin.post("/api/jobs", json={"name": f"up-{secrets.token_hex(3)}", "schema_text": "labels: [",
                                           "manifest": lines})
    assert broken.status_code == 422 and "uploaded schema" in broken.json()["detail"]
    stray = admin.post("/api/jobs", json={"name": f"up-{secrets.token_hex(3)}", "manifest": lines,
                                          "schema_text": yaml.safe_dump(dict(SCHEMA, uncertain_policy="absent"))})
    assert stray.status_code == 422 and "uncertain_policy: only allowed with 'uncertain: true'" in stray.json()["detail"]
    page = admin.get("/admin/jobs/new", headers={"accept": "text/html"})
    assert page.status_code == 200 and "chest-xray.yaml" in page.text


def test_job_refusals_say_what_the_admin_gave(as_user, make_user, upload_instances):
    """Task C trial: a query that matches nothing named its filters as a Python dict ("{'modality':
    ['MR'], 'study_uid': [], …, 'metadata': {}}"); a bad uploaded line did not say which line."""
    admin = as_user(make_user("admin"))
    nobody = f"NOBODY-{secrets.token_hex(4)}"
    none = admin.post("/api/jobs", json={"name": f"z-{secrets.token_hex(3)}", "schema_file": "chest-xray.yaml",
                                         "query": {"modality": ["MR"], "patient_id": nobody}})
    assert none.status_code == 422
    detail = none.json()["detail"]
    assert f"no image in Orthanc matches modality MR, patient id {nobody}; 0 instance(s) matched" in detail, detail
    assert "{" not in detail and "None" not in detail and "[]" not in detail, detail
    lines = [line.to_dict() for line in manifest_lines(upload_instances(2))]
    del lines[1]["labels"]
    broken = admin.post("/api/jobs", json={"name": f"l-{secrets.token_hex(3)}", "schema_file": "chest-xray.yaml",
                                           "manifest": lines})
    assert broken.status_code == 422 and broken.json()["detail"].startswith("manifest line 2: "), broken.text
    assert "'labels'" in broken.json()["detail"]
    lines[1]["labels"] = ["Foo"]
    foreign = admin.post("/api/jobs", json={"name": f"f-{secrets.token_hex(3)}", "schema_file": "chest-xray.yaml",
                                            "manifest": lines})
    # (was "… differ from schema 'chest-xray''s […]")
    assert foreign.json()["detail"].endswith("labels ['Foo'] differ from the schema's ('chest-xray': "
                                             "['Opacity', 'Device', 'Effusion'])"), foreign.text


def test_users_add_role_disable_reset(as_user, make_user):
    admin_user = make_user("admin")
    admin = as_user(admin_user)
    name = f"new-{secrets.token_hex(3)}"
    added = admin.post("/api/users", json={"name": name, "role": "annotator", "password": "first password"})
    assert added.status_code == 201 and added.json()["role"] == "annotator"
    assert admin.post("/api/users", json={"name": name, "role": "annotator", "password": "first password"}).status_code == 409
    short = admin.post("/api/users", json={"name": name + "s", "role": "annotator", "password": "short"})
    assert short.status_code == 422
    user_id = added.json()["id"]
    person = as_user()
    assert person.login(name, "first password").status_code == 303
    assert admin.client.patch(f"/api/users/{user_id}", json={"role": "reviewer"},
                              headers={"X-CSRF-Token": admin.csrf}).json()["role"] == "reviewer"
    assert person.get("/api/me").json()["role"] == "reviewer"
    reset = admin.post(f"/api/users/{user_id}/password", json={"password": "second password"})
    assert reset.status_code == 200
    assert person.get("/api/me").status_code == 401  # sessions ended
    assert as_user().login(name, "first password").status_code == 401
    again = as_user()
    assert again.login(name, "second password").status_code == 303
    disabled = admin.client.patch(f"/api/users/{user_id}", json={"active": False}, headers={"X-CSRF-Token": admin.csrf})
    assert disabled.json()["active"] is False and again.get("/api/me").status_code == 401
    me = [u for u in admin.get("/api/users").json() if u["name"] == admin_user.name][0]
    self_lock = admin.client.patch(f"/api/users/{me['id']}", json={"active": False}, headers={"X-CSRF-Token": admin.csrf})
    assert self_lock.status_code == 409
    page = admin.get("/admin/users", headers={"accept": "text/html"})
    assert page.status_code == 200 and name in page.text
    annotator = as_user(make_user("annotator"))
    assert annotator.get("/api/users").status_code == 403
    assert annotator.post("/api/users", json={"name": "x" + name, "role": "admin", "password": PASSWORD}).status_code == 403


def test_job_page_shows_quality_histogram_and_download(as_user, make_user, make_job):
    job_id, _ = make_job(2, k=2)
    a, b = (as_user(make_user("annotator")) for _ in range(2))
    for user, opacity in ((a, True), (b, False)):
        for _ in range(2):
            task = user.post(f"/api/jobs/{job_id}/next").json()
            assert user.post(f"/api/assignments/{task['assignment_id']}/answer",
                             json={"annotation": answer(opacity)}).status_code == 200
    admin = as_user(make_user("admin"))
    page = admin.get(f"/jobs/{job_id}", headers={"accept": "text/html"}).text
    assert 'id="agreement-histogram"' in page and "Opacity sens / spec" in page
    assert a.user.name in page and f"/api/jobs/{job_id}/output.manifest" in page
    assert "2 images waiting for review" in page and "image(s)" not in page  # 2 items split 1–1
    exported = admin.post(f"/api/jobs/{job_id}/export", json={}).json()
    assert set(exported) >= {"written", "left_out_review", "left_out_excluded", "download"}
