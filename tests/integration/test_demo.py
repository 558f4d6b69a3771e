"""`make demo`'s loop end to end on its own stack: data plane → portal job labeled by simulated
annotators over HTTP → export + SR → training → evaluation → predictions written back → next job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest

from labeling.orthanc.local_stack import LocalStack
from labeling.manifest.build import read_manifest
from labeling.orthanc.client import OrthancClient
from labeling.gt.output_manifest import read_output_manifest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CT_FAST = ["--ct-epochs", "1", "--ct-volume", "32,32,32"]  # the CT job's 3-D model: one epoch, a 32^3 grid


def _referenced_frames(ds, sop_instance_uid: str) -> list[int]:
    """Every Referenced Frame Number (1-based) of ``ds``'s references to one instance, at any depth."""
    from pydicom.multival import MultiValue

    found: list[int] = []
    for element in ds:
        if element.VR != "SQ":
            continue
        for item in element.value:
            if item.get("ReferencedSOPInstanceUID") == sop_instance_uid and "ReferencedFrameNumber" in item:
                numbers = item.ReferencedFrameNumber
                found += [int(n) for n in (numbers if isinstance(numbers, MultiValue) else [numbers])]
            found += _referenced_frames(item, sop_instance_uid)
    return found


def _check_ct_job(workdir: Path, stdout: str) -> None:
    """The CT-series job (devkit/demo_ct.py): 10 series + 1 multi-frame task labeled on slices, SRs whose
    regions reference slices of their own series (frames of the multi-frame instance, which copies a series
    with nodules), a 3-D model with its report, series predictions."""
    import io

    import pydicom

    from labeling.dicom.sr import read_annotation_sr

    truth = {r["source"]: r for r in map(json.loads, (workdir / "data" / "ct" / "ground_truth.jsonl").open())}
    tasks = read_manifest(workdir / "ct-manifest.jsonl")
    assert {t.source for t in tasks} == set(truth) and len(tasks) == 11
    records = read_output_manifest(workdir / "ct-output.manifest")
    assert {r.source for r in records} == set(truth) and all(r.annotators == 3 for r in records)
    assert all(roi["instance"] in truth[r.source]["instances"] for r in records for roi in r.rois)
    assert all("slices" in r.agreement for r in records if r.rois) and sum(len(r.rois) for r in records) > 0
    multi = next(t for t in truth.values() if t["level"] == "multiframe")
    assert multi["rois"]  # copied from a series with nodules: there is something to draw on its frames
    drawn, frames = 0, []
    with OrthancClient.from_connection(LocalStack(workdir).connection()) as orthanc:
        for sr_id in [i["ID"] for i in orthanc.find("Instance", {"Modality": "SR", "PatientID": "SYNCT*"},
                                                        expand=False)]:
            ds = pydicom.dcmread(io.BytesIO(orthanc.instance_file(sr_id)))
            own = {u for t in truth.values() if t["patient_id"] == ds.PatientID for u in t["sop_instance_uids"]}
            back = read_annotation_sr(ds, roi_references=True)
            assert {r["sop_instance_uid"] for r in back["rois"]} <= own  # regions on the right slices
            drawn += len(back["rois"])
            frames += _referenced_frames(ds, multi["sop_instance_uids"][0])
    assert drawn > 0
    # The multi-frame task's SR references the frames drawn on (PS3.3 C.18.6.1.1), 1-based, within the instance.
    assert frames and all(1 <= n <= multi["image"]["frames"] for n in frames), frames
    metrics = json.loads((workdir / "model-ct" / "metrics.json").read_text())
    info = json.loads((workdir / "model-ct" / "model.json").read_text())
    assert info["spatial_dims"] == 3 and metrics["n_train"] + metrics["n_val"] == 11 and "Nodule" in metrics["auroc"]
    predictions = [json.loads(x) for x in (workdir / "ct-predictions.jsonl").open()]
    assert {p["source"] for p in predictions} == set(truth) and {p["level"] for p in predictions} == {"series",
                                                                                                          "multiframe"}
    assert "CT-series job      ct-nodule-demo: 11/11 series done" in stdout and "CT job time" in stdout
    assert f"on {metrics['n_val']} held-out series: too few to judge the model" in stdout


def test_demo_runs_the_local_loop():
    # Under /tmp like a user's checkout: pytest's tmp_path is private to root, and the PostgreSQL
    # server runs as the postgres user.
    workdir = Path(tempfile.mkdtemp(prefix="dicom-annotate-demo-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTHANC_")}
    try:
        run = subprocess.run([sys.executable, "-m", "devkit", "demo", "--workdir", str(workdir),
                              "--patients", "6", "--size", "64", "--epochs", "1", "--image-size", "32", *CT_FAST],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        lines = read_manifest(workdir / "manifest.jsonl")
        truth = [json.loads(x) for x in (workdir / "data" / "synth" / "ground_truth.jsonl").open()]
        # Every synthetic DX image (6 patients x 2 studies) is in the manifest, and only those.
        assert len(lines) == len(truth) == 12
        assert {line.sop_instance_uid for line in lines} == {t["sop_instance_uid"] for t in truth}
        assert "Orthanc Explorer" in run.stdout and "manifest.jsonl (12 lines)" in run.stdout
        upload = json.loads((workdir / "upload-report.json").read_text())
        assert upload["totals"]["rejected"] == 0 and upload["totals"]["failed"] == 0

        # Labeled in the portal by 3 simulated annotators: 36 answers, every image consolidated.
        assert "answers this run: {'annotator1': 12, 'annotator2': 12, 'annotator3': 12}" in run.stdout
        records = read_output_manifest(workdir / "output.manifest")
        assert {r.source for r in records} == {line.source for line in lines}
        assert all(r.annotators == 3 and set(r.labels) == {"Opacity", "Device", "Effusion"} for r in records)
        # Consolidation is better than chance against the truth the annotators were simulated from.
        by_uid = {t["sop_instance_uid"]: {e["name"]: e["present"] for e in t["labels"]} for t in truth}
        uid_of = {line.source: line.sop_instance_uid for line in lines}
        correct = sum(r.labels[name] == by_uid[uid_of[r.source]][name] for r in records for name in r.labels)
        assert correct / (3 * len(records)) >= 0.8

        # The model's directory and report, the truth evaluation, predictions and the next job's manifest.
        metrics = json.loads((workdir / "model" / "metrics.json").read_text())
        assert {"auroc", "macro_auroc", "n_train", "n_val"} <= set(metrics)
        assert metrics["n_train"] + metrics["n_val"] == 12
        assert (workdir / "model" / "report.html").is_file()
        assert json.loads((workdir / "evaluation-vs-truth" / "metrics.json").read_text())["n_val"] >= 1
        predictions = [json.loads(x) for x in (workdir / "predictions.jsonl").open()]
        assert len(predictions) == 12
        next_job = [json.loads(x) for x in (workdir / "next-job.manifest.jsonl").open()]
        assert len(next_job) == 12 and all("prelabel" in line for line in next_job)

        # Orthanc now holds one annotation SR per image (portal) and one model SR per image.
        with OrthancClient.from_connection(LocalStack(workdir).connection()) as orthanc:
            srs = orthanc.find("Instance", {"Modality": "SR"}, expand=False)
        assert len(srs) >= 24

        _check_ct_job(workdir, run.stdout)

        # A second run reuses the stack, data, users and job: everything is already stored and labeled.
        again = subprocess.run([sys.executable, "-m", "devkit", "demo", "--workdir", str(workdir),
                                "--epochs", "1", "--image-size", "32", *CT_FAST],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "already running" in again.stdout
        assert "answers this run: {'annotator1': 0, 'annotator2': 0, 'annotator3': 0}" in again.stdout
        totals = json.loads((workdir / "upload-report.json").read_text())["totals"]
        assert totals["stored"] == 0 and totals["already_stored"] == upload["totals"]["files"]
    finally:
        subprocess.run([sys.executable, "-m", "labeling", "portal", "stop", "--workdir", str(workdir)],
                       cwd=ROOT, env=env, capture_output=True, timeout=60)
        LocalStack(workdir).down()
        shutil.rmtree(workdir, ignore_errors=True)
