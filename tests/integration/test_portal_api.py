"""Portal API against the session's real PostgreSQL + Orthanc: assignment, leases, K answers,
consolidation, review, close, export round trip (through the training-side reader), SR, images."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import boto3
import highdicom as hd
import pydicom
import pytest
from moto import mock_aws
from sqlalchemy import func, select

from labeling.orthanc.local_stack import REPO_ROOT
from labeling.gt.output_manifest import read_output_manifest
from labeling.portal import jobs as J
from labeling.portal.db import transaction
from labeling.portal.export import export_manifest, export_sr
from labeling.portal.images import IMAGE_CACHE_CONTROL
from labeling.portal.models import Assignment, Item, Job, User
from labeling.portal.local import portal_env
from labeling.dicom.sr import read_annotation_sr
from tests.integration.portal_fixtures import *  # noqa: F401,F403 - fixtures
from tests.integration.portal_fixtures import SCHEMA, answer, manifest_lines

pytestmark = pytest.mark.integration


def _user(session, name):
    return session.scalars(select(User).where(User.name == name)).one()


def test_migration_matches_models(portal_engine):
    """The Alembic migration creates exactly the tables and columns the models declare."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from labeling.portal.models import Base

    with portal_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_healthz_and_login_rate_limit(as_user, make_user):
    anonymous = as_user()
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/api/jobs").status_code == 401
    user = make_user("annotator")
    for _ in range(5):
        assert anonymous.login(user.name, "wrong password!").status_code == 401
    # Sixth attempt inside the window: refused whatever the password.
    limited = anonymous.login(user.name, user.password)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    # Another user from the same address is not affected.
    other = make_user("annotator")
    assert as_user(other).get("/api/me").json()["name"] == other.name


def test_session_cookie_flags(as_user, make_user):
    browser = as_user()
    page = browser.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    user = make_user("admin")
    response = browser.client.post("/login", data={"username": user.name, "password": user.password,
                                                   "csrf_token": token}, follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert response.status_code == 303
    assert "portal_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie


def test_assignment_flow_k_answers_consolidate_and_review(as_user, make_user, make_job, portal_db):
    job_id, ids = make_job(2, k=2, agreement_threshold=0.6)
    a, b, c = (as_user(make_user("annotator")) for _ in range(3))
    t_a = a.post(f"/api/jobs/{job_id}/next").json()
    assert t_a["item_id"] and t_a["image_url"].endswith(f"/api/items/{t_a['item_id']}/image")
    assert t_a["schema"]["labels"][0]["name"] == "Opacity"
    # A reload gives the same lease, not a new item.
    assert a.post(f"/api/jobs/{job_id}/next").json()["assignment_id"] == t_a["assignment_id"]
    t_b = b.post(f"/api/jobs/{job_id}/next").json()
    assert t_b["item_id"] == t_a["item_id"]          # K=2: the first item goes to two annotators
    t_c = c.post(f"/api/jobs/{job_id}/next").json()
    assert t_c["item_id"] != t_a["item_id"]          # ... and the third annotator gets the next one

    # Image: served de-identified to an assigned annotator.
    image = a.get(t_a["image_url"])
    assert image.status_code == 200 and image.headers["content-type"] == "application/dicom"
    ds = pydicom.dcmread(io.BytesIO(image.content))
    assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientName) == ""

    # Invalid answers are refused with the field named.
    bad = a.post(f"/api/assignments/{t_a['assignment_id']}/answer",
                 json={"annotation": {"labels": [{"name": "Opacity", "present": True}]}})
    assert bad.status_code == 422 and "Device" in bad.json()["detail"]
    shape = a.post(f"/api/assignments/{t_a['assignment_id']}/answer", json={"annotation": answer(
        True, rois=[{"label": "Effusion", "shape": "ellipse", "points": [[1, 1], [5, 5]]}], effusion=True)})
    assert shape.status_code == 422 and "not allowed" in shape.json()["detail"]

    box = [{"label": "Opacity", "shape": "rectangle", "points": [[2, 2], [20, 20]]}]
    ok = a.post(f"/api/assignments/{t_a['assignment_id']}/answer", json={"annotation": json.dumps(answer(True, rois=box))})
    assert ok.status_code == 200 and ok.json()["stored"] is True
    assert "answers" not in ok.json() and "consolidated" not in json.dumps(ok.json())  # blind
    again = a.post(f"/api/assignments/{t_a['assignment_id']}/answer", json={"annotation": answer(True)})
    assert again.status_code == 409
    with transaction(portal_db) as session:
        assert session.get(Item, t_a["item_id"]).state == "open"  # one of K=2 answers
    # Second answer agrees (box nearly the same): consolidated, final, no review.
    box_b = [{"label": "Opacity", "shape": "rectangle", "points": [[3, 2], [20, 21]]}]
    assert b.post(f"/api/assignments/{t_b['assignment_id']}/answer",
                  json={"annotation": answer(True, rois=box_b)}).status_code == 200
    with transaction(portal_db) as session:
        item = session.get(Item, t_a["item_id"])
        assert item.state == "done" and item.final["annotators"] == 2
        assert [e["present"] for e in item.final["labels"]] == [True, False, False]
        assert item.final["rois"][0]["label"] == "Opacity" and item.agreement >= 0.6

    # a takes the second item (never the first again); a and c disagree → review.
    t_a2 = a.post(f"/api/jobs/{job_id}/next").json()
    assert t_a2["item_id"] == t_c["item_id"]
    assert a.post(f"/api/assignments/{t_a2['assignment_id']}/answer", json={"annotation": answer(True, True)}).status_code == 200
    assert c.post(f"/api/assignments/{t_c['assignment_id']}/answer", json={"annotation": answer(False, False, True)}).status_code == 200
    assert a.post(f"/api/jobs/{job_id}/next").json()["done"] is True
    with transaction(portal_db) as session:
        item2 = session.get(Item, t_c["item_id"])
        assert item2.state == "review" and item2.final is None and item2.agreement < 0.6

    reviewer = as_user(make_user("reviewer"))
    queue = reviewer.get("/api/review").json()
    assert t_c["item_id"] in [q["item_id"] for q in queue]
    detail = reviewer.get(f"/api/review/{t_c['item_id']}").json()
    assert sorted(d["annotator"] for d in detail["answers"]) == sorted([a.user.name, c.user.name])
    page = reviewer.get(f"/review/{t_c['item_id']}", headers={"accept": "text/html"})
    assert page.status_code == 200 and a.user.name in page.text
    edited = answer(True, False, True, rois=[{"label": "Effusion", "shape": "rectangle", "points": [[1, 20], [30, 30]]}])
    decided = reviewer.post(f"/api/review/{t_c['item_id']}", json={"action": "edit", "answer": edited})
    assert decided.status_code == 200, decided.text
    final = decided.json()["final"]
    assert [e["present"] for e in final["labels"]] == [True, False, True]
    assert all(e["confidence"] == 1.0 for e in final["labels"]) and final["rois"][0]["label"] == "Effusion"
    assert reviewer.post(f"/api/review/{t_c['item_id']}", json={"action": "accept"}).status_code == 409

    # Progress: per job and per annotator.
    admin = as_user(make_user("admin"))
    progress = admin.get(f"/api/jobs/{job_id}/progress").json()
    assert progress["done"] == 2 and progress["answers"] == 4 and progress["answers_needed"] == 4
    per = {row["annotator"]: row for row in progress["annotators"]}
    assert per[a.user.name]["submitted"] == 2 and per[a.user.name]["items_per_hour"] > 0
    assert per[a.user.name]["median_seconds"] is not None
    mine = a.get(f"/api/jobs/{job_id}/progress").json()
    assert mine["annotator"] == a.user.name and "annotators" not in mine  # an annotator sees only their own

    # Export (admin, through the API) round-trips through the one output-manifest reader.
    exported = admin.post(f"/api/jobs/{job_id}/export", json={})
    assert exported.status_code == 200 and exported.json()["written"] == 2
    download = admin.get(f"/api/jobs/{job_id}/output.manifest")
    records = read_output_manifest(download.text.splitlines())
    by_source = {r.source: r for r in records}
    assert set(by_source) == set(ids)
    assert by_source[ids[0]].labels == {"Opacity": True, "Device": False, "Effusion": False}
    assert by_source[ids[1]].labels == {"Opacity": True, "Device": False, "Effusion": True}
    assert by_source[ids[1]].rois[0]["label"] == "Effusion"
    with transaction(portal_db) as session:
        name = session.get(Job, job_id).name
    assert Path(exported.json()["destination"]).read_text() .count("\n") == 2
    assert records[0].job_name == name and records[0].human_annotated is True


@pytest.mark.parametrize("path", ["next_task", "lease_and_fetch"])
@pytest.mark.parametrize("round_", range(3))
def test_concurrent_assignment_never_over_assigns(make_user, make_job, portal_engine, portal_db, round_, path):
    """Both the general path and the API's one-statement path (which falls back to it)."""
    job_id, _ = make_job(3, k=2)
    users = [make_user("annotator") for _ in range(8)]
    got: list[tuple[str, int | None]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(users))

    def take(name: str) -> None:
        try:
            barrier.wait()
            with transaction(portal_db) as session:
                user = _user(session, name)
                if path == "next_task":
                    lease = J.next_task(session, session.get(Job, job_id), user)
            if path == "lease_and_fetch":
                lease = J.lease_and_fetch(portal_engine, portal_db, job_id, user)[1]
            got.append((name, lease.item_id if lease else None))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(u.name,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    leased = [item for _, item in got if item is not None]
    # 3 items x K=2 = 6 slots for 8 annotators: all 6 given (none lost to lock contention), none twice.
    assert len(leased) == 6 and len([1 for _, item in got if item is None]) == 2
    assert max(leased.count(i) for i in set(leased)) == 2
    with transaction(portal_db) as session:
        slots = session.scalars(select(Item.open_slots).where(Item.job_id == job_id)).all()
        pairs = session.execute(select(Assignment.item_id, Assignment.user_id).where(Assignment.job_id == job_id)).all()
    assert slots == [0, 0, 0] and len(set(pairs)) == len(pairs) == 6


def test_lease_expiry_returns_item(make_user, make_job, portal_db):
    job_id, _ = make_job(1, k=1, lease_seconds=60)
    first, second = make_user("annotator"), make_user("annotator")
    now = dt.datetime.now(dt.timezone.utc)
    with transaction(portal_db) as session:
        job = session.get(Job, job_id)
        lease = J.next_task(session, job, _user(session, first.name), now)
        assert lease is not None
        lease_id = lease.id
        assert J.next_task(session, job, _user(session, second.name), now) is None  # K=1, taken
    later = now + dt.timedelta(seconds=61)
    with transaction(portal_db) as session:
        job = session.get(Job, job_id)
        taken = J.next_task(session, job, _user(session, second.name), later)
        assert taken is not None and taken.item_id == lease.item_id
    # The first annotator's expired lease is gone: their late answer is refused.
    with pytest.raises(J.NotFound):
        with transaction(portal_db) as session:
            J.submit_answer(session, lease_id, _user(session, first.name), answer(True), later)


def test_expired_lease_answer_refused_before_sweep(make_user, make_job, portal_db):
    job_id, _ = make_job(1, k=1, lease_seconds=30)
    user = make_user("annotator")
    now = dt.datetime.now(dt.timezone.utc)
    with transaction(portal_db) as session:
        lease = J.next_task(session, session.get(Job, job_id), _user(session, user.name), now)
        lease_id = lease.id
    with pytest.raises(J.Conflict, match="expired"):
        with transaction(portal_db) as session:
            J.submit_answer(session, lease_id, _user(session, user.name), answer(True), now + dt.timedelta(seconds=31))


def test_pause_close_consolidates_partial_items(as_user, make_user, make_job, portal_db):
    job_id, ids = make_job(2, k=3)
    admin = as_user(make_user("admin"))
    a = as_user(make_user("annotator"))
    assert admin.post(f"/api/jobs/{job_id}/state", json={"state": "paused"}).json()["state"] == "paused"
    assert a.post(f"/api/jobs/{job_id}/next").status_code == 409
    assert admin.post(f"/api/jobs/{job_id}/state", json={"state": "active"}).status_code == 200
    task = a.post(f"/api/jobs/{job_id}/next").json()
    assert a.post(f"/api/assignments/{task['assignment_id']}/answer", json={"annotation": answer(False, True)}).status_code == 200
    a.post(f"/api/jobs/{job_id}/next")  # a live lease on the second item, dropped on close
    closed = admin.post(f"/api/jobs/{job_id}/close").json()
    assert closed["state"] == "closed" and closed["answered"] == 1 and closed["consolidated_at_close"] == 1
    with transaction(portal_db) as session:
        job = session.get(Job, job_id)
        assert job.report and job.report["items"] == 1
        item = session.get(Item, task["item_id"])
        assert item.state == "done" and item.final["annotators"] == 1
        assert session.scalar(select(func.count(Assignment.id)).where(
            Assignment.job_id == job_id, Assignment.submitted_at.is_(None))) == 0
    assert a.post(f"/api/jobs/{job_id}/next").status_code == 409
    assert admin.post(f"/api/jobs/{job_id}/close").status_code == 409


def test_prelabel_becomes_initial_answer(as_user, make_user, make_job, upload_instances, portal_db, geometry_of):
    ids = upload_instances(1)
    prelabel = {"labels": [{"name": "Opacity", "present": True, "confidence": 0.9},
                           {"name": "Device", "present": False, "confidence": 0.8},
                           {"name": "Effusion", "present": False, "confidence": 0.7}],
                "rois": [], "model": "densenet-test"}
    from labeling.contracts.schema import LabelSchema

    with transaction(portal_db) as session:
        job = J.create_job(session, name=f"it-pre-{ids[0][:8]}", schema=LabelSchema.from_dict(SCHEMA),
                           lines=manifest_lines(ids, prelabel=prelabel), geometry=geometry_of(ids),
                           annotators_per_item=1)
        job_id = job.id
    a = as_user(make_user("annotator"))
    task = a.post(f"/api/jobs/{job_id}/next").json()
    assert task["initialAnswer"]["labels"] == [{"name": "Opacity", "present": True},
                                               {"name": "Device", "present": False},
                                               {"name": "Effusion", "present": False}]
    # A bad pre-label is refused at job creation, naming the line.
    bad = dict(prelabel, labels=[{"name": "Nope", "present": True}])
    with pytest.raises(J.Invalid, match="manifest line 1: 'prelabel'"):
        with transaction(portal_db) as session:
            J.create_job(session, name=f"it-bad-{ids[0][:8]}", schema=LabelSchema.from_dict(SCHEMA),
                         lines=manifest_lines(ids, prelabel=bad), geometry=geometry_of(ids))


def _finished_job(make_user, make_job, portal_db, k=1):
    job_id, ids = make_job(2, k=k)
    users = [make_user("annotator") for _ in range(k)]
    with transaction(portal_db) as session:
        job = session.get(Job, job_id)
        for user in users:
            for n in range(2):
                lease = J.next_task(session, job, _user(session, user.name))
                J.submit_answer(session, lease.id, _user(session, user.name), answer(
                    True, rois=[{"label": "Opacity", "shape": "ellipse", "points": [[4, 4], [12 + n, 16]]}]))
    return job_id, ids, users


def test_export_to_s3_with_kms(make_user, make_job, portal_db, monkeypatch):
    job_id, ids, _ = _finished_job(make_user, make_job, portal_db)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        kms = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
        s3.create_bucket(Bucket="portal-exports")
        with transaction(portal_db) as session:
            result = export_manifest(session, session.get(Job, job_id), "s3://portal-exports/jobs/out.manifest",
                                     s3_client=s3, kms_key_id=kms)
        assert result.written == 2
        obj = s3.get_object(Bucket="portal-exports", Key="jobs/out.manifest")
        assert obj["ServerSideEncryption"] == "aws:kms" and kms in obj["SSEKMSKeyId"]
        records = read_output_manifest(obj["Body"].read().decode().splitlines())
        assert [r.source for r in records] == ids and records[0].rois[0]["shape"] == "ellipse"


def test_sr_written_to_orthanc_parses_with_highdicom(make_user, make_job, portal_db, client):
    job_id, ids, users = _finished_job(make_user, make_job, portal_db, k=2)
    with transaction(portal_db) as session:
        result = export_sr(session, session.get(Job, job_id), client)
        finals = {i.source: i.final for i in session.scalars(select(Item).where(Item.job_id == job_id))}
    assert not result.errors and len(result.stored) == 2
    for sr_id in result.stored.values():
        ds = pydicom.dcmread(io.BytesIO(client.instance_file(sr_id)))
        sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
        back = read_annotation_sr(ds)
        assert sr.SOPClassUID == ds.SOPClassUID
        referenced = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0] \
            .ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        source_id = [s for s in ids if pydicom.dcmread(io.BytesIO(client.instance_file(s)),
                                                       stop_before_pixels=True).SOPInstanceUID == referenced][0]
        assert [(e["name"], e["present"]) for e in back["labels"]] == \
            [(e["name"], e["present"]) for e in finals[source_id]["labels"]]
        assert back["rois"][0]["label"] == "Opacity"
        observers = json.dumps(back.get("observers", [])) + str(ds)
        assert all(u.name in observers for u in users)
    # Exporting again stores nothing new (deterministic SOP Instance UIDs).
    with transaction(portal_db) as session:
        again = export_sr(session, session.get(Job, job_id), client)
    assert again.stored == result.stored


def test_cli_user_job_status_export(local_stack, upload_instances, tmp_path):
    env = {**os.environ, **portal_env(local_stack.workdir)}
    ids = upload_instances(2)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(line.to_json() + "\n" for line in manifest_lines(ids)))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    pw = tmp_path / "pw"
    pw.write_text("a long enough password\n")
    name = f"cli-{ids[0][:8]}"

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labeling", "portal", *argv], env=env, cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    assert cli("migrate").returncode == 0
    added = cli("user", "add", f"admin-{name}", "--role", "admin", "--password-file", str(pw))
    assert added.returncode == 0, added.stderr
    dup = cli("user", "add", f"admin-{name}", "--role", "admin", "--password-file", str(pw))
    assert dup.returncode == 1 and "already exists" in dup.stderr
    created = cli("job", "create", "--name", name, "--manifest", str(manifest), "--schema", str(schema), "-k", "1")
    assert created.returncode == 0 and "2 items" in created.stdout, created.stderr
    bad = cli("job", "create", "--name", name + "x", "--manifest", str(tmp_path / "missing.jsonl"), "--schema", str(schema))
    assert bad.returncode == 2 and "missing.jsonl" in bad.stderr
    status = json.loads(cli("job", "status", name, "--json").stdout)
    assert status["items"] == 2 and status["open"] == 2
    out = tmp_path / "out.manifest"
    exported = cli("export", name, "--out", str(out))
    assert exported.returncode == 0 and "wrote 0 lines" in exported.stdout and out.read_text() == ""


def test_local_portal_for_the_demo(local_stack, upload_instances, tmp_path):
    """What `make demo` uses: start_local_portal, prepare_demo (users + job), stop_portal_in."""
    import requests

    from labeling.portal.local import PID_FILE, USERS_FILE, prepare_demo, start_local_portal, stop_portal_in

    ids = upload_instances(2)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(line.to_json() + "\n" for line in manifest_lines(ids)))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    url, process = start_local_portal(local_stack.workdir)
    try:
        assert url.startswith("http://127.0.0.1:") and requests.get(f"{url}/healthz", timeout=5).status_code == 200
        job_name = f"demo-{ids[0][:8]}"
        demo = prepare_demo(local_stack.workdir, manifest, schema, job_name=job_name)
        users_file = Path(demo["users_file"])
        assert users_file.name == USERS_FILE and users_file.stat().st_mode & 0o077 == 0
        assert demo["users"] == {"admin": "admin", "reviewer": "reviewer", "annotator1": "annotator",
                                 "annotator2": "annotator"}
        again = prepare_demo(local_stack.workdir, manifest, schema, job_name=job_name)  # rerun: idempotent
        assert again["users"] == demo["users"]
        password = json.loads(users_file.read_text())["annotator1"]["password"]
        with requests.Session() as http:
            page = http.get(f"{url}/login", timeout=5)
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            http.post(f"{url}/login", data={"username": "annotator1", "password": password, "csrf_token": token},
                      timeout=10)
            jobs = http.get(f"{url}/api/jobs", timeout=5).json()
        assert job_name in [j["name"] for j in jobs]
        assert stop_portal_in(local_stack.workdir) is True
        process.wait(10)
        assert not (Path(local_stack.workdir) / PID_FILE).exists()
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/healthz", timeout=2)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)


def test_next_task_prefetches_images(as_user, make_user, make_job, portal_settings):
    """Taking a task warms the disk cache for its image and for the item likely to come next."""
    import time

    job_id, ids = make_job(3, k=1)
    cache = Path(portal_settings.cache_dir) / "d"
    assert not any((cache / f"{i}.dcm").exists() for i in ids)
    a = as_user(make_user("annotator"))
    task = a.post(f"/api/jobs/{job_id}/next").json()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all((cache / f"{i}.dcm").exists() for i in ids[:2]):
        time.sleep(0.1)
    assert (cache / f"{ids[0]}.dcm").exists() and (cache / f"{ids[1]}.dcm").exists()
    assert not (cache / f"{ids[2]}.dcm").exists()  # only one item ahead
    assert cache.stat().st_mode & 0o077 == 0 and cache.parent.stat().st_mode & 0o077 == 0
    cached = pydicom.dcmread(cache / f"{ids[1]}.dcm")
    assert cached.PatientIdentityRemoved == "YES"  # the cache only ever holds de-identified files
    assert a.get(task["image_url"]).content == (cache / f"{ids[0]}.dcm").read_bytes()


def test_task_offers_next_image_to_its_browser_only(as_user, make_user, make_job):
    """The task names the likely next item's image with a token: that session may read it before the
    lease (the browser caches it); without the token, with another item's or another session's, 404."""
    job_id, ids = make_job(3, k=1)
    a, b = as_user(make_user("annotator")), as_user(make_user("annotator"))
    task = a.post(f"/api/jobs/{job_id}/next").json()
    upcoming = task["prefetch"]
    assert upcoming["image_url"].endswith(f"/api/items/{task['item_id'] + 1}/image")
    token = {"X-Prefetch-Token": upcoming["token"]}
    assert a.get(upcoming["image_url"]).status_code == 404  # not leased, no token
    early = a.get(upcoming["image_url"], headers=token)
    assert early.status_code == 200 and early.headers["cache-control"] == IMAGE_CACHE_CONTROL
    assert len(early.content) > 1000 and early.content != a.get(task["image_url"]).content  # not the current one
    assert b.get(upcoming["image_url"], headers=token).status_code == 404  # bound to A's session
    third = upcoming["image_url"].replace(f"/{task['item_id'] + 1}/", f"/{task['item_id'] + 2}/")
    assert a.get(third, headers=token).status_code == 404  # bound to the item
    # After Submit the next task is that item, at the same URL (so the browser's cached copy serves).
    a.post(f"/api/assignments/{task['assignment_id']}/answer", json={"annotation": answer(True)})
    following = a.post(f"/api/jobs/{job_id}/next").json()
    assert following["image_url"] == upcoming["image_url"] and a.get(following["image_url"]).content == early.content
    assert following["prefetch"]["image_url"] == third
    a.post(f"/api/assignments/{following['assignment_id']}/answer", json={"annotation": answer(True)})
    assert a.post(f"/api/jobs/{job_id}/next").json()["prefetch"] is None  # the last item: nothing ahead


def test_portal_up_one_command_and_down(local_stack, tmp_path):
    """`portal up`: stack reused, portal.env 0600, migrated, first admin with a password shown once,
    served on loopback; a rerun reuses it; `portal down --keep-stack` stops only the portal."""
    import re

    import requests

    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labeling", "portal", *argv], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=180,
                              env={k: v for k, v in os.environ.items() if not k.startswith("PORTAL_")})

    workdir = str(local_stack.workdir)
    admin = f"admin-{os.urandom(3).hex()}"
    short = tmp_path / "short"
    short.write_text("abc\n")
    refused = cli("up", "--workdir", workdir, "--admin", admin, "--admin-password-file", str(short))
    assert refused.returncode == 1 and "--admin-password-file" in refused.stderr and "8 characters" in refused.stderr
    up = cli("up", "--workdir", workdir, "--admin", admin)
    try:
        assert up.returncode == 0, up.stderr
        url = re.search(r"portal\s+(http://127\.0\.0\.1:\d+)/", up.stdout).group(1)
        password = re.search(rf"admin\s+{admin}\s+password (\S+)", up.stdout).group(1)
        # Where a job's images come from (the session's Orthanc has some by now, or none yet).
        assert re.search(r"orthanc\s+http://127\.0\.0\.1:\d+/  \((\d+ instances|no images yet)", up.stdout), up.stdout
        for private in ("portal.env", "portal.log", "portal.pid"):  # the log holds every request line
            assert (Path(workdir) / private).stat().st_mode & 0o077 == 0, private
        with requests.Session() as http:
            page = http.get(f"{url}/login", timeout=5)
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            http.post(f"{url}/login", data={"username": admin, "password": password, "csrf_token": token}, timeout=10)
            assert http.get(f"{url}/api/me", timeout=5).json()["role"] == "admin"
        again = cli("up", "--workdir", workdir, "--admin", admin)
        assert again.returncode == 0 and "already running" in again.stdout and "exists already" in again.stdout
        assert password not in again.stdout  # shown once
        assert "lost it? another admin: `source " in again.stdout and "portal user add NAME --role admin" in again.stdout
    finally:
        down = cli("down", "--workdir", workdir, "--keep-stack")
    assert down.returncode == 0 and "portal: stopped" in down.stdout, down.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/healthz", timeout=2)
    assert local_stack.status().running
    # The access log (labeling/portal/accesslog.py) holds the session's requests, written by the
    # time the portal has stopped.
    log = (Path(workdir) / "portal.log").read_text()
    assert re.search(r'\d\d:\d\d,\d{3} 127\.0\.0\.1:\d+ - "GET /api/me HTTP/1\.1" 200\n', log), log[-2000:]


def test_portal_down_purge_leaves_nothing_running_or_behind(tmp_path):
    """`portal up` in a fresh work dir, then `portal down --purge`: no process of it is left, and of
    what `portal up`/`local up` wrote only the lock file remains (PostgreSQL's outside dir included)."""
    import re

    import requests

    from labeling.orthanc.local_stack import LocalStack

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "ORTHANC_"))}
    workdir = tmp_path / "stack"
    up = subprocess.run([sys.executable, "-m", "labeling", "portal", "up", "--workdir", str(workdir)],
                        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env=env)
    stack = LocalStack(workdir)
    try:
        assert up.returncode == 0, up.stderr
        url = re.search(r"portal\s+(http://127\.0\.0\.1:\d+/)", up.stdout).group(1)
        assert requests.get(f"{url}healthz", timeout=5).ok
        # A fresh stack's Orthanc is empty: say how to put images there.
        assert f"(no images yet: `source {workdir}/orthanc.env`, then `python -m labeling upload FOLDER`" in up.stdout
        pg_dir = stack.pg_dir
        assert (workdir / "portal.env").exists() and pg_dir.exists()
    finally:
        # Down with the work dir relative, up with it absolute: as `make demo` then `make demo-down`.
        down = subprocess.run([sys.executable, "-m", "labeling", "portal", "down", "--purge", "--workdir",
                               "stack"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env={**env, "PYTHONPATH": str(REPO_ROOT)})
    assert down.returncode == 0 and "portal: stopped" in down.stdout, down.stderr
    assert not stack.status().running
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}healthz", timeout=2)
    assert sorted(p.name for p in workdir.iterdir()) == [".lock"]
    assert not pg_dir.exists()


def test_driver_statements_fail_as_sqlalchemy_errors_and_renew_a_broken_pool(portal_settings):
    """The per-request statements (db.one_row, db.driver_transaction) bypass SQLAlchemy's Connection:
    their errors still arrive as SQLAlchemy's (the app answers OperationalError 503), without the
    parameters (a session id is one), and a connection the server dropped renews the pool."""
    from sqlalchemy.exc import DataError, OperationalError

    from labeling.portal.db import driver_transaction, make_engine, one_row

    engine = make_engine(portal_settings, pool_size=2)
    try:
        with pytest.raises(DataError) as caught:  # 1 / (12 - 12)
            one_row(engine, "SELECT 1 / (12 - length(%(sid)s))", {"sid": "s3cr3t-value"})
        assert caught.value.orig.sqlstate == "22012" and "s3cr3t" not in str(caught.value)
        pid = one_row(engine, "SELECT pg_backend_pid()", {})[0]
        with pytest.raises(DataError):  # a failed transaction is rolled back; the connection stays usable
            with driver_transaction(engine) as conn:
                conn.execute("SELECT 1 / 0")
        assert one_row(engine, "SELECT pg_backend_pid()", {})[0] == pid
        # Two pooled connections, both dropped by the server (as by a database restart): the first
        # request fails (503), and the next gets a new connection, not the other dead one.
        pooled = [engine.raw_connection() for _ in range(2)]
        pids = [c.driver_connection.info.backend_pid for c in pooled]
        for c in pooled:
            c.close()
        admin = make_engine(portal_settings, pool_size=1)
        with admin.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_terminate_backend(pid) FROM unnest(ARRAY{pids}) pid")
        admin.dispose()
        with pytest.raises(OperationalError):
            one_row(engine, "SELECT 1", {})
        assert one_row(engine, "SELECT pg_backend_pid()", {})[0] not in pids
    finally:
        engine.dispose()
