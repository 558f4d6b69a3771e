"""Strict answers and requests (issue 12): geometry recorded at job creation and enforced on every
answer, bounded ROIs, a request-body limit before parsing, authentication before the body."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys

import pytest
from sqlalchemy import select

from labeling.orthanc.local_stack import REPO_ROOT
from labeling.portal.models import Assignment, Item
from labeling.portal.db import transaction
from labeling.portal.local import portal_env
from tests.integration.portal_fixtures import *  # noqa: F401,F403 - fixtures
from tests.integration.portal_fixtures import SCHEMA, answer, manifest_lines

pytestmark = pytest.mark.integration

LABELS = ["Opacity", "Device", "Effusion"]


def _task(as_user, make_user, make_job):
    job_id, ids = make_job(1, k=1)
    annotator = as_user(make_user("annotator"))
    task = annotator.post(f"/api/jobs/{job_id}/next").json()
    return annotator, task, ids


def test_job_records_geometry_from_orthanc(make_job, portal_db):
    job_id, ids = make_job(2, k=1)
    with transaction(portal_db) as session:
        items = session.scalars(select(Item).where(Item.job_id == job_id)).all()
    assert [item.geometry for item in items] == [{"rows": 32, "columns": 32, "frames": 1}] * 2


@pytest.mark.parametrize("bad, message", [
    (answer(True, rois=[{"label": "Opacity", "shape": "rectangle", "points": [[-5000, -5000], [10240, 10240]]}]),
     "rois[0].points"),
    (answer(True, rois=[{"label": "Opacity", "shape": "rectangle", "points": [[1, 1], [33, 5]]}]),
     "outside the 32x32 image"),
    (dict(answer(False), image={"rows": 1792, "columns": 269, "frame": 0}), "image.rows: 1792 but the image has 32"),
    (dict(answer(False), image={"rows": 32, "columns": 32, "frame": 1}), "image.frame"),
    (answer(True, rois=[{"label": "Opacity", "shape": "rectangle", "points": [[1, 1], [2, 2]]}] * 1001),
     "at most 1000 per answer"),
    (answer(True, rois=[{"label": "Device", "shape": "polygon", "points": [[1, 1]] * 10001}]), "at most 10000"),
])
def test_answers_outside_the_recorded_geometry_are_refused(as_user, make_user, make_job, portal_db, bad, message):
    annotator, task, _ = _task(as_user, make_user, make_job)
    refused = annotator.post(f"/api/assignments/{task['assignment_id']}/answer", json={"annotation": bad})
    assert refused.status_code == 422 and message in refused.json()["detail"], refused.text
    ok = answer(True, rois=[{"label": "Opacity", "shape": "rectangle", "points": [[0, 0], [32, 32]]}])
    stored = annotator.post(f"/api/assignments/{task['assignment_id']}/answer", json={"annotation": ok})
    assert stored.status_code == 200, stored.text


def test_answer_without_image_gets_the_recorded_geometry(as_user, make_user, make_job, portal_db):
    annotator, task, _ = _task(as_user, make_user, make_job)
    bare = {"labels": answer(False)["labels"]}
    assert annotator.post(f"/api/assignments/{task['assignment_id']}/answer", json={"annotation": bare}).status_code == 200
    with transaction(portal_db) as session:
        stored = session.get(Assignment, task["assignment_id"]).answer
    assert stored["image"] == {"rows": 32, "columns": 32, "frame": 0}


def test_body_limit_413_before_parsing_and_nothing_stored(as_user, make_user, make_job, portal_db):
    annotator, task, _ = _task(as_user, make_user, make_job)
    url = f"/api/assignments/{task['assignment_id']}/answer"
    padding = "x" * (20 * 1024 * 1024)
    huge = json.dumps({"annotation": dict(answer(False), note=padding)})
    declared = annotator.client.post(url, content=huge, headers={"X-CSRF-Token": annotator.csrf,
                                                                 "Content-Type": "application/json"})
    assert declared.status_code == 413 and "at most 1048576 bytes" in declared.json()["detail"]

    def chunks():  # no Content-Length: counted while it arrives
        for start in range(0, len(huge), 65536):
            yield huge[start:start + 65536].encode()

    chunked = annotator.client.post(url, content=chunks(), headers={"X-CSRF-Token": annotator.csrf,
                                                                    "Content-Type": "application/json"})
    assert chunked.status_code == 413 and "too large" in chunked.json()["detail"]
    with transaction(portal_db) as session:
        assert session.get(Assignment, task["assignment_id"]).submitted_at is None


def test_authentication_and_role_before_the_body(as_user, make_user):
    anonymous = as_user()
    garbage = b"{not json"
    headers = {"Content-Type": "application/json"}
    assert anonymous.client.post("/api/jobs", content=garbage, headers=headers).status_code == 401
    assert anonymous.client.post("/api/assignments/1/answer", content=garbage, headers=headers).status_code == 401
    annotator = as_user(make_user("annotator"))
    forbidden = annotator.client.post("/api/jobs", content=garbage, headers={**headers, "X-CSRF-Token": annotator.csrf})
    assert forbidden.status_code == 403 and "admin" in forbidden.json()["detail"]
    no_csrf = annotator.client.post("/api/jobs/1/next", content=garbage, headers=headers)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["detail"]
    admin = as_user(make_user("admin"))
    parsed = admin.client.post("/api/jobs", content=garbage, headers={**headers, "X-CSRF-Token": admin.csrf})
    assert parsed.status_code == 422  # an admin's body is read and parsed


def test_a_validation_refusal_says_where_and_what_without_echoing_the_body(as_user, make_user):
    admin = as_user(make_user("admin"))
    headers = {"X-CSRF-Token": admin.csrf}
    bulky = "x" * 20_000
    refused = admin.client.post("/api/jobs", json={"name": bulky, "manifest": [bulky] * 30}, headers=headers)
    assert refused.status_code == 422, refused.text
    assert len(refused.content) < 20_000 and bulky not in refused.text  # FastAPI's default echoes `input`
    problems = refused.json()["detail"]
    assert problems and all(set(p) == {"loc", "msg", "type"} for p in problems), problems
    many = admin.client.post("/api/jobs", json=[1] * 100, headers=headers)
    assert many.status_code == 422 and len(many.json()["detail"]) <= 21, many.text


def test_job_naming_missing_instances_is_refused_api_and_cli(as_user, make_user, upload_instances, portal_db,
                                                            local_stack, tmp_path):
    present = upload_instances(1)
    missing = ["-".join(secrets.token_hex(4) for _ in range(5)) for _ in range(7)]
    lines = [line.to_dict() for line in manifest_lines(present + missing)]
    admin = as_user(make_user("admin"))
    name = f"miss-{secrets.token_hex(3)}"
    refused = admin.post("/api/jobs", json={"name": name, "schema": SCHEMA, "manifest": lines})
    detail = refused.json()["detail"]
    assert refused.status_code == 422 and "7 of 8 instances are not in Orthanc" in detail
    assert all(i in detail for i in missing[:5]) and missing[5] not in detail and "2 more" in detail
    assert admin.get("/api/jobs").json() == [] or name not in [j["name"] for j in admin.get("/api/jobs").json()]

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    cli = subprocess.run([sys.executable, "-m", "labeling", "portal", "job", "create", "--name", name,
                          "--manifest", str(manifest), "--schema", str(schema)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=120, env={**os.environ, **portal_env(local_stack.workdir)})
    assert cli.returncode == 2 and missing[0] in cli.stderr and "not in Orthanc" in cli.stderr, cli.stderr
    created = admin.post("/api/jobs", json={"name": name, "schema": SCHEMA, "manifest": lines[:1]})
    assert created.status_code == 201 and created.json()["items"] == 1


def test_one_one_split_accepted_in_review_exports_a_consistent_line(as_user, make_user, make_job, portal_db):
    """Issue 12: after a 1–1 split, "accept" must not export Opacity absent with an Opacity rectangle."""
    from labeling.gt.output_manifest import read_output_manifest

    job_id, ids = make_job(1, k=2, agreement_threshold=0.6)
    a, b = (as_user(make_user("annotator")) for _ in range(2))
    t_a, t_b = (u.post(f"/api/jobs/{job_id}/next").json() for u in (a, b))
    rect = [{"label": "Opacity", "shape": "rectangle", "points": [[2, 2], [20, 20]]}]
    contradiction = a.post(f"/api/assignments/{t_a['assignment_id']}/answer",
                           json={"annotation": answer(False, rois=rect)})
    assert contradiction.status_code == 422 and "rois[0]" in contradiction.json()["detail"] \
        and "marks absent" in contradiction.json()["detail"]
    assert a.post(f"/api/assignments/{t_a['assignment_id']}/answer", json={"annotation": answer(True, rois=rect)}).status_code == 200
    assert b.post(f"/api/assignments/{t_b['assignment_id']}/answer", json={"annotation": answer(False)}).status_code == 200
    with transaction(portal_db) as session:
        assert session.get(Item, t_a["item_id"]).state == "review"
    reviewer = as_user(make_user("reviewer"))
    edit = reviewer.post(f"/api/review/{t_a['item_id']}", json={"action": "edit", "answer": answer(False, rois=rect)})
    assert edit.status_code == 422 and "marks absent" in edit.json()["detail"]
    accepted = reviewer.post(f"/api/review/{t_a['item_id']}", json={"action": "accept"})
    assert accepted.status_code == 200
    admin = as_user(make_user("admin"))
    [record] = read_output_manifest(admin.get(f"/api/jobs/{job_id}/output.manifest").text.splitlines())
    absent = {name for name, present in record.labels.items() if not present}
    assert not any(roi["label"] in absent for roi in record.rois), (record.labels, record.rois)


def test_uncertain_only_where_the_schema_offers_it_and_no_vote(as_user, make_user, make_job, portal_db):
    """Issue 12 item 3: "uncertain" as a third choice when the schema offers it (``uncertain: true``):
    stored as the annotator gave it, counted as answered, no vote in consolidation (a 'present' and an
    'uncertain' consolidate to present); refused where the schema does not offer it, and in a review
    decision (the output manifest says present or absent)."""
    unsure = {"labels": [{"name": "Opacity", "uncertain": True}, {"name": "Device", "present": False},
                         {"name": "Effusion", "present": False}], "rois": []}
    plain_job, _ = make_job(1, k=1)
    annotator = as_user(make_user("annotator"))
    task = annotator.post(f"/api/jobs/{plain_job}/next").json()
    refused = annotator.post(f"/api/assignments/{task['assignment_id']}/answer", json={"annotation": unsure})
    assert refused.status_code == 422 and "does not offer" in refused.json()["detail"]

    job_id, _ = make_job(1, k=2, schema=dict(SCHEMA, uncertain=True), agreement_threshold=-1.0)
    a, b = (as_user(make_user("annotator")) for _ in range(2))
    t_a, t_b = (u.post(f"/api/jobs/{job_id}/next").json() for u in (a, b))
    assert t_a["schema"]["uncertain"] is True  # the viewer offers the third choice from the task's schema
    missing = dict(unsure, labels=unsure["labels"][:2])
    incomplete = a.post(f"/api/assignments/{t_a['assignment_id']}/answer", json={"annotation": missing})
    assert incomplete.status_code == 422 and "present/absent/uncertain" in incomplete.json()["detail"]
    assert a.post(f"/api/assignments/{t_a['assignment_id']}/answer", json={"annotation": unsure}).status_code == 200
    assert b.post(f"/api/assignments/{t_b['assignment_id']}/answer", json={"annotation": answer(True)}).status_code == 200
    with transaction(portal_db) as session:
        stored = session.get(Assignment, t_a["assignment_id"]).answer
        item = session.get(Item, t_a["item_id"])
        opacity = next(e for e in item.consolidated["labels"] if e["name"] == "Opacity")
    assert stored["labels"][0] == {"name": "Opacity", "uncertain": True}
    assert opacity["present"] is True and item.state == "done"
    page = as_user(make_user("reviewer")).get(f"/review/{t_a['item_id']}", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "<td>uncertain</td>" in page.text  # not shown as "absent"

    review_job, _ = make_job(1, k=1, schema=dict(SCHEMA, uncertain=True))
    c = as_user(make_user("annotator"))
    t_c = c.post(f"/api/jobs/{review_job}/next").json()
    assert c.post(f"/api/assignments/{t_c['assignment_id']}/flag", json={"reason": "unreadable"}).status_code == 200
    reviewer = as_user(make_user("reviewer"))
    decided = reviewer.post(f"/api/review/{t_c['item_id']}", json={"action": "edit", "answer": unsure})
    assert decided.status_code == 422 and "a review decides present or absent" in decided.json()["detail"]


@pytest.mark.parametrize("policy", ["absent", "present"])
def test_uncertain_policy_gives_the_portal_and_gt_the_same_consolidation(as_user, make_user, make_job, portal_db,
                                                                         policy):
    """The schema's uncertain_policy (CheXpert's U-Zeros / U-Ones), applied by the consolidation library
    only: the portal's item at K answers and close-job's Dawid–Skene for a partial item decide as GT's
    post-label Lambda does for the same answers on lines carrying the policy; the stored answers stay
    as given and every label entry counts its uncertain answers."""
    from labeling.gt import contracts as gt_contracts
    from labeling.gt import postlabel as gt_postlabel

    def unsure(rois=()):
        return {"labels": [{"name": "Opacity", "uncertain": True}, {"name": "Device", "present": False},
                           {"name": "Effusion", "present": False}], "rois": list(rois),
                "image": {"rows": 32, "columns": 32, "frame": 0}}

    rect = {"label": "Opacity", "shape": "rectangle", "points": [[2, 2], [20, 20]]}
    schema = dict(SCHEMA, uncertain=True, uncertain_policy=policy)
    job_id, _ = make_job(2, k=3, schema=schema, agreement_threshold=-1.0)
    users = {name: as_user(make_user("annotator")) for name in "abc"}
    given = {1: {"a": answer(True, rois=[rect]), "b": answer(False), "c": unsure([dict(rect, points=[[3, 3], [21, 21]])])},
             2: {"a": answer(True), "c": unsure()}}  # item 2 stays partial: close-job consolidates it
    item_ids = {}
    for position, answers in given.items():
        for name, content in answers.items():
            task = users[name].post(f"/api/jobs/{job_id}/next").json()
            assert task["position"] == position, task
            item_ids[position] = task["item_id"]
            stored = users[name].post(f"/api/assignments/{task['assignment_id']}/answer", json={"annotation": content})
            assert stored.status_code == 200, stored.text
    admin = as_user(make_user("admin"))
    assert admin.post(f"/api/jobs/{job_id}/close").status_code == 200
    with transaction(portal_db) as session:
        items = {p: session.get(Item, item_ids[p]) for p in given}
        portal = {p: item.consolidated for p, item in items.items()}
        lines = {p: dict(item.line) for p, item in items.items()}
        stored = [a.answer for a in session.scalars(select(Assignment).where(Assignment.job_id == job_id))]
    assert sum(1 for a in stored if a["labels"][0] == {"name": "Opacity", "uncertain": True}) == 2  # as given

    def decisions(content):
        return [(e["name"], e["present"], e.get("uncertain_answers")) for e in content["labels"]], content["rois"]

    for position, answers in given.items():
        data_object = dict(lines[position], uncertain_policy=schema["uncertain_policy"])  # what `manifest` writes
        objects = gt_contracts.parse_payload([{"datasetObjectId": str(position), "dataObject": data_object,
                                               "annotations": [{"workerId": w, "annotationData": {
                                                   "content": json.dumps({"annotation": json.dumps(c)})}}
                                                   for w, c in answers.items()]}])
        responses, report = gt_postlabel.consolidate_payload(objects, "chest")
        assert report["uncertainPolicy"] == policy and report["errorCount"] == 0
        assert decisions(portal[position]) == decisions(responses[0]["consolidatedAnnotation"]["content"]["chest"])
    opacity = portal[1]["labels"][0]
    assert (opacity["present"], opacity["uncertain_answers"]) == (policy == "present", 1)
    assert len(portal[1]["rois"]) == (1 if policy == "present" else 0)  # a's and c's rectangles, when present
    assert portal[2]["labels"][0]["present"] is (policy == "present")  # absent: a 1-1 tie is not a finding
    page = as_user(make_user("reviewer")).get(f"/review/{item_ids[1]}", headers={"Accept": "text/html"})
    assert f"“Uncertain” answers count as {policy} votes" in page.text


def test_a_manifest_line_built_for_another_uncertain_policy_is_refused(portal_db, upload_instances, geometry_of):
    """The job's schema decides what "uncertain" counts as; a line saying otherwise (built with another
    version of the schema) is refused naming the line, and nothing is written. A line without the key
    (a manifest built before it existed) is accepted."""
    import dataclasses

    from labeling.contracts.schema import LabelSchema
    from labeling.portal import jobs as J
    from labeling.portal.errors import Invalid
    from labeling.portal.models import Job

    schema = LabelSchema.from_dict(dict(SCHEMA, uncertain=True, uncertain_policy="absent"))
    ids = upload_instances(2)
    lines = manifest_lines(ids, SCHEMA)
    bad = [lines[0], dataclasses.replace(lines[1], uncertain_policy="present")]
    name = f"it-{secrets.token_hex(5)}"
    with pytest.raises(Invalid, match="manifest line 2: uncertain_policy: 'present' differs from schema "
                                      "'portal-it''s 'absent'; rebuild the manifest with this schema"):
        with transaction(portal_db) as session:
            J.create_job(session, name=name, schema=schema, lines=bad, geometry=geometry_of(ids))
    with transaction(portal_db) as session:
        assert session.scalar(select(Job.id).where(Job.name == name)) is None
        J.create_job(session, name=name, schema=schema, lines=lines, geometry=geometry_of(ids))


def test_an_image_gone_from_orthanc_says_so_and_the_annotator_moves_on(as_user, make_user, make_job, portal_db,
                                                                      client):
    """Issue 12 "Why": a missing instance showed a black viewport and "decode failed" while Submit stayed
    disabled, so the annotator waited out the lease. The image route says 404 "not in Orthanc" (the
    task page shows it, labeling/portal/static/portal.js) and flag and skip free the annotator at once."""
    job_id, ids = make_job(2, k=1)
    client.delete("instances", ids[0])  # before the lease: `next` prefetches (caches) the image
    annotator = as_user(make_user("annotator"))
    task = annotator.post(f"/api/jobs/{job_id}/next").json()
    gone = annotator.get(task["image_url"])
    assert gone.status_code == 404 and "not in Orthanc" in gone.json()["detail"]
    flagged = annotator.post(f"/api/assignments/{task['assignment_id']}/flag", json={"reason": "unreadable"})
    assert flagged.status_code == 200
    following = annotator.post(f"/api/jobs/{job_id}/next").json()
    assert following["item_id"] != task["item_id"] and following["position"] == 2
    with transaction(portal_db) as session:
        assert session.get(Item, task["item_id"]).state == "review"  # the reviewer sees the reason


def test_an_image_deleted_from_orthanc_after_it_was_cached_stops_being_served(as_user, make_user, make_job,
                                                                               client, portal_settings):
    """A withdrawn (e.g. wrong-patient) image: the portal's cached copy is rechecked against Orthanc once
    it is older than REVALIDATE_S, and browsers keep it no longer than that."""
    import time
    from pathlib import Path

    from labeling.portal.images import REVALIDATE_S

    job_id, ids = make_job(2, k=1)
    annotator = as_user(make_user("annotator"))
    task = annotator.post(f"/api/jobs/{job_id}/next").json()
    shown = annotator.get(task["image_url"])
    assert shown.status_code == 200 and shown.headers["cache-control"] == f"private, max-age={REVALIDATE_S}"
    cached = Path(portal_settings.cache_dir) / "d" / f"{ids[0]}.dcm"
    old = time.time() - REVALIDATE_S - 5
    os.utime(cached, (old, old))
    assert annotator.get(task["image_url"]).status_code == 200  # still in Orthanc: served, age reset
    assert time.time() - cached.stat().st_mtime < 60
    client.delete("instances", ids[0])
    assert annotator.get(task["image_url"]).status_code == 200  # checked < REVALIDATE_S ago: the copy
    os.utime(cached, (old, old))
    gone = annotator.get(task["image_url"])
    assert gone.status_code == 404 and "not in Orthanc" in gone.json()["detail"], gone.text
    assert not cached.exists()  # the withdrawn copy is gone from the cache too


def test_skip_and_flag_leave_the_queue_and_flags_reach_review(as_user, make_user, make_job, portal_db):
    job_id, ids = make_job(3, k=1)
    a, b = (as_user(make_user("annotator")) for _ in range(2))
    first = a.post(f"/api/jobs/{job_id}/next").json()
    assert (first["position"], first["total"]) == (1, 3)
    assert a.post(f"/api/assignments/{first['assignment_id']}/skip").json()["skipped"] is True
    second = a.post(f"/api/jobs/{job_id}/next").json()
    assert second["item_id"] != first["item_id"] and (second["position"], second["total"]) == (2, 3)
    # The skipped item's slot went back: another annotator gets it.
    assert b.post(f"/api/jobs/{job_id}/next").json()["item_id"] == first["item_id"]
    url = f"/api/assignments/{second['assignment_id']}/flag"
    assert a.post(url, json={"reason": "nonsense"}).status_code == 422
    other = a.post(url, json={"reason": "other"})
    assert other.status_code == 422 and "say what is wrong" in other.json()["detail"]
    assert a.post(url, json={"reason": "burned-in-phi", "comment": "name in the corner"}).status_code == 200
    assert a.post(url, json={"reason": "unreadable"}).status_code == 409  # once
    assert a.post(f"/api/assignments/{second['assignment_id']}/answer", json={"annotation": answer(False)}).status_code == 409
    with transaction(portal_db) as session:
        assert session.get(Item, second["item_id"]).state == "review"
    reviewer = as_user(make_user("reviewer"))
    assert second["item_id"] in [q["item_id"] for q in reviewer.get("/api/review").json()]
    detail = reviewer.get(f"/api/review/{second['item_id']}").json()
    assert detail["flags"] == [{"annotator": a.user.name, "reason": "burned-in-phi", "text": "burned-in text / PHI",
                                "comment": "name in the corner"}]
    page = reviewer.get(f"/review/{second['item_id']}", headers={"accept": "text/html"}).text
    assert "burned-in text / PHI" in page and "name in the corner" in page
    accept = reviewer.post(f"/api/review/{second['item_id']}", json={"action": "accept"})
    assert accept.status_code == 409 and "flagged" in accept.json()["detail"]
    assert reviewer.post(f"/api/review/{second['item_id']}", json={"action": "exclude"}).status_code == 200
    admin = as_user(make_user("admin"))
    exported = admin.post(f"/api/jobs/{job_id}/export", json={}).json()
    assert exported["left_out_excluded"] == 1 and exported["written"] == 0


def test_reopen_a_wrong_flag_returns_the_item_to_annotators(as_user, make_user, make_job, portal_db):
    job_id, _ = make_job(1, k=1)
    a, b = (as_user(make_user("annotator")) for _ in range(2))
    task = a.post(f"/api/jobs/{job_id}/next").json()
    assert a.post(f"/api/assignments/{task['assignment_id']}/flag", json={"reason": "wrong-body-part"}).status_code == 200
    assert b.post(f"/api/jobs/{job_id}/next").json()["done"] is True
    reviewer = as_user(make_user("reviewer"))
    assert reviewer.post(f"/api/review/{task['item_id']}", json={"action": "reopen"}).json()["state"] == "open"
    again = b.post(f"/api/jobs/{job_id}/next").json()
    assert again["item_id"] == task["item_id"]
    assert b.post(f"/api/assignments/{again['assignment_id']}/answer", json={"annotation": answer(False)}).status_code == 200
    with transaction(portal_db) as session:
        assert session.get(Item, task["item_id"]).state == "done"


def test_security_headers_on_every_answer_including_the_guards(as_user, make_user):
    anonymous = as_user()
    for response in (anonymous.get("/login"), anonymous.client.post("/api/jobs", content=b"{}"),
                     anonymous.client.post("/login", content=b"x" * (2 * 1024 * 1024))):
        assert response.status_code in (200, 401, 413), response.status_code
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"
    static = anonymous.get("/static/portal/portal.css")
    assert static.headers["cache-control"] == "public, max-age=60"  # a route's own choice is kept
