"""Series items in the portal (issue 14, labeling/portal/series.py) against the session's real Orthanc +
PostgreSQL: a job from ``manifest --level series``, the task's slice list, the slice route's rules and
de-identification consistent within the series, answers checked against the item's slices,
consolidation per slice, the GT-shaped export and the SR against the right slices read back from Orthanc."""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path

import pydicom
import pytest

from labeling.contracts.schema import load_schema
from labeling.dicom.sr import read_annotation_sr
from labeling.manifest.build import build_manifest, parse_filters
from labeling.portal import jobs as J
from labeling.portal.db import transaction
from labeling.portal.export import manifest_lines as export_lines, export_sr
from labeling.portal.models import Item, Job
from labeling.portal.series import checked_line_geometry
from devkit.synth_series import generate_series_dataset
from tests.integration.portal_fixtures import *  # noqa: F401,F403 - fixtures

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEED = 9143  # patients SYNCT9143-*: this module's own
SLICES = 8
SIZE = 64


@pytest.fixture(scope="module")
def ct(client, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("portal-ct") / "data"
    generate_series_dataset(out, series=1, slices=SLICES, size=SIZE, seed=SEED, prevalence=1.0, progress=False)
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    for path in sorted(out.rglob("*.dcm")):
        client.upload(path.read_bytes())
    schema = load_schema(REPO / "schemas" / "ct-nodule.yaml")
    result = build_manifest(client, schema_name=schema.name, labels=schema.label_names, task_type=schema.task_type,
                            filters=parse_filters(patient_id=f"SYNCT{SEED}-*"), level="series")
    lines = {line.extra["level"]: line for line in result.lines}
    return {"schema": schema, "lines": lines, "series": truth[0], "multi": truth[1]}


def _job(portal_db, client, ct, lines) -> int:
    geometry = checked_line_geometry(client, lines)
    with transaction(portal_db) as session:
        return J.create_job(session, name=f"ct-{secrets.token_hex(5)}", schema=ct["schema"], lines=lines,
                            geometry=geometry, annotators_per_item=2, agreement_threshold=0.0).id


def _roi(instance: str, frame: int = 0, box=((20, 20), (30, 30))) -> dict:
    return {"label": "Nodule", "shape": "ellipse", "points": [list(box[0]), list(box[1])],
            "instance": instance, "frame": frame}


def _answer(*rois: dict) -> dict:
    return {"labels": [{"name": "Nodule", "present": bool(rois)}], "rois": list(rois),
            "image": {"rows": SIZE, "columns": SIZE}}


def test_series_job_delivers_slices_checks_answers_consolidates_and_writes_sr(
        ct, client, portal_db, as_user, make_user):
    series_line, multi_line = ct["lines"]["series"], ct["lines"]["multiframe"]
    job_id = _job(portal_db, client, ct, [multi_line, series_line])
    a, b, outsider = (as_user(make_user("annotator")) for _ in range(3))

    task = a.post(f"/api/jobs/{job_id}/next").json()
    assert task["level"] == "multiframe"
    multi_item = task["item_id"]
    assert [(s["instance"], s["frame"]) for s in task["slices"]] == [(multi_line.source, f) for f in range(SLICES)]
    assert all(s["url"].endswith(f"/api/items/{multi_item}/instances/{multi_line.source}") for s in task["slices"])

    # answers must lie on the item's slices: 422 naming the field
    other = series_line.extra["instances"][0]
    refused = a.post(f"/api/assignments/{task['assignment_id']}/answer", json={"annotation": _answer(_roi(other))})
    assert refused.status_code == 422 and "rois[0].instance" in refused.json()["detail"]
    missing = a.post(f"/api/assignments/{task['assignment_id']}/answer",
                     json={"annotation": {**_answer(), "rois": [{k: v for k, v in _roi(multi_line.source).items()
                                                                    if k not in ("instance", "frame")}],
                                          "labels": [{"name": "Nodule", "present": True}]}})
    assert missing.status_code == 422 and "rois[0].instance: required" in missing.json()["detail"]
    for user in (a, b):
        t = user.post(f"/api/jobs/{job_id}/next").json()
        assert t["item_id"] == multi_item
        assert user.post(f"/api/assignments/{t['assignment_id']}/answer",
                         json={"annotation": _answer(_roi(multi_line.source, 5))}).status_code == 200

    task = a.post(f"/api/jobs/{job_id}/next").json()
    series_item = task["item_id"]
    instances = list(series_line.extra["instances"])
    assert task["level"] == "series" and [s["instance"] for s in task["slices"]] == instances
    assert {s["frame"] for s in task["slices"]} == {0} and task["image_url"] == task["slices"][0]["url"]

    # the slice route: de-identified, one new Study/Series UID for every slice of the series
    first, last = (pydicom.dcmread(io.BytesIO(a.get(task["slices"][k]["url"]).content)) for k in (0, -1))
    assert first.PatientIdentityRemoved == "YES"
    assert first.StudyInstanceUID == last.StudyInstanceUID != ct["series"]["study_instance_uid"]
    assert first.SeriesInstanceUID == last.SeriesInstanceUID != ct["series"]["series_instance_uid"]
    assert first.SOPInstanceUID != last.SOPInstanceUID
    assert a.get(f"/api/items/{series_item}/image").content == a.get(task["slices"][0]["url"]).content
    # only to those who may see the item; only the item's own slices
    assert outsider.get(task["slices"][0]["url"]).status_code == 404
    review = as_user(make_user("reviewer")).get(f"/review/{series_item}")  # the reviewer's viewer gets the stack
    assert review.status_code == 200 and task["slices"][-1]["url"] in review.text
    assert a.get(f"/api/items/{series_item}/instances/{multi_line.source}").status_code == 403
    # the order of the slice route's answers: session (401), instance ID (422), item (404), slice (403)
    assert as_user().get(task["slices"][0]["url"]).status_code == 401
    assert outsider.get(f"/api/items/{series_item}/instances/not-an-id").status_code == 422
    assert as_user(make_user("reviewer")).get(task["slices"][-1]["url"]).status_code == 200

    # two answers on the same slice + one lone ROI on its neighbour: fused per slice, never across
    # (K=2: a lone ROI has the support ceil(K/2) = 1 asks, so it stays, on its own slice)
    middle = instances[SLICES // 2]
    assert a.post(f"/api/assignments/{task['assignment_id']}/answer",
                  json={"annotation": _answer(_roi(middle), _roi(instances[SLICES // 2 + 1]))}).status_code == 200
    t = b.post(f"/api/jobs/{job_id}/next").json()
    assert t["item_id"] == series_item
    assert b.post(f"/api/assignments/{t['assignment_id']}/answer",
                  json={"annotation": _answer(_roi(middle, box=((21, 20), (30, 31))))}).status_code == 200
    with transaction(portal_db) as session:
        item = session.get(Item, series_item)
        assert item.state == "done"
        assert [(r["instance"], r["frame"], r["confidence"]) for r in item.final["rois"]] == [
            (middle, 0, 1.0), (instances[SLICES // 2 + 1], 0, 0.5)]  # in the series' order
        slices = item.final["agreement"]["slices"]
        assert slices["slices_drawn"] == 2 and slices["slices_kept"] == 2 and slices["neighbour_pairs"] == 1

        job = session.get(Job, job_id)
        exported = {line["source"]: line for line in export_lines(session, job).lines}
        assert set(exported) == {series_line.source, multi_line.source}  # GT-shaped: source = the series
        assert exported[series_line.source][job.label_attribute]["rois"][0]["instance"] == middle
        result = export_sr(session, job, client)
        assert result.errors == [] and set(result.stored) == {series_item, multi_item}

    def sr_back(item_id: int) -> dict:
        data = client.request("GET", f"/instances/{result.stored[item_id]}/file").content
        return read_annotation_sr(pydicom.dcmread(io.BytesIO(data)), roi_references=True)

    middle_uid = ct["series"]["sop_instance_uids"][ct["series"]["instances"].index(middle)]
    back = sr_back(series_item)
    next_uid = ct["series"]["sop_instance_uids"][ct["series"]["instances"].index(instances[SLICES // 2 + 1])]
    assert [(r["sop_instance_uid"], r["frame"]) for r in back["rois"]] == [(middle_uid, 0), (next_uid, 0)]
    assert back["labels"] == [{"name": "Nodule", "present": True, "confidence": pytest.approx(back["labels"][0]["confidence"])}]
    back = sr_back(multi_item)
    assert [(r["sop_instance_uid"], r["frame"]) for r in back["rois"]] == [(ct["multi"]["sop_instance_uids"][0], 5)]


def test_series_job_refused_when_orthanc_disagrees(ct, client):
    line = ct["lines"]["series"]
    foreign = ct["lines"]["multiframe"].source  # an instance of the same study, not of this series
    bad = type(line)(**{**{k: getattr(line, k) for k in ("source", "labels", "task_type", "schema", "frames",
                                                         "rows", "columns")},
                        "extra": {**line.extra, "instances": [*line.extra["instances"][:-1], foreign]}})
    with pytest.raises(J.Invalid, match=r"1 of 1 instances could not be read: .*1 of its 8 instances are not in this series"):
        checked_line_geometry(client, [bad])
    gone = type(line)(**{**{k: getattr(line, k) for k in ("labels", "task_type", "schema")},
                         "source": "0" * 8 + "-" + "-".join(["0" * 8] * 4),
                         "extra": {"level": "series", "instances": list(line.extra["instances"])}})
    with pytest.raises(J.Invalid, match="1 of 1 instances are not in Orthanc"):
        checked_line_geometry(client, [gone])


def test_series_prediction_written_back_as_an_sr_of_the_series(ct, client):
    from training.writeback import write_back

    line = ct["lines"]["series"]
    prediction = {"source": line.source, "level": "series", "instances": list(line.extra["instances"]),
                  "model": {"name": "dicom-annotate DenseNet121", "version": "abc123"},
                  "labels": [{"name": "Nodule", "present": True, "confidence": 0.8, "probability": 0.8}],
                  "image": {"rows": SIZE, "columns": SIZE, "frame": 0}}
    stored = write_back(client, [prediction])[0]["stored"]
    data = client.request("GET", f"/instances/{stored}/file").content
    back = read_annotation_sr(pydicom.dcmread(io.BytesIO(data)))
    assert back["labels"] == [{"name": "Nodule", "present": True, "confidence": 0.8}]
    assert back["observers"][0]["kind"] == "device"
    first = ct["series"]["sop_instance_uids"][ct["series"]["instances"].index(line.extra["instances"][0])]
    sr = pydicom.dcmread(io.BytesIO(data))
    evidence = [item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
                for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for item in [series]]
    assert evidence == [first]
    assert client.request("GET", f"/instances/{stored}/study").json()["ID"] == \
        client.request("GET", f"/series/{line.source}/study").json()["ID"]
    assert write_back(client, [prediction])[0]["stored"] == stored  # the same prediction: the same SR


def test_job_from_an_orthanc_query_at_series_level(ct, as_user, make_user):
    admin = as_user(make_user("admin"))
    patient = ct["series"]["patient_id"]
    created = admin.post("/api/jobs", json={"name": f"ctq-{secrets.token_hex(4)}", "schema_file": "ct-nodule.yaml",
                                            "query": {"patient_id": patient, "level": "series"}})
    assert created.status_code == 201, created.text
    assert created.json()["items"] == 2  # the series and the multi-frame instance, not 2 x 8 slices
    bad = admin.post("/api/jobs", json={"name": f"ctq-{secrets.token_hex(4)}", "schema_file": "ct-nodule.yaml",
                                        "query": {"patient_id": patient, "level": "study"}})
    assert bad.status_code == 422 and "level" in bad.text
