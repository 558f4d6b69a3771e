"""GT pre-label of series and multi-frame tasks (labeling/gt/prelabel.py, handle_series): every slice
staged de-identified with the series' UIDs mapped alike, the task input lists them in order, and a task
beyond GT's data-object limits is answered with the reason (and refused by `gt create-job`)."""

from __future__ import annotations

import io
import json

import pydicom
import pytest

from labeling.gt import prelabel as gt_prelabel
from labeling.gt.contracts import GtError
from labeling.gt.jobs import _check_manifest
from labeling.contracts.schema import LabelSchema
from tests.unit.test_lambda_handlers import BUCKET, FakeOrthanc, _dicom, _pre_event, aws, prelabel  # noqa: F401

SERIES = "5e7a0c1b-2d3e4f50-6a7b8c9d-0e1f2a3b-4c5d6e7f"
SLICES = [f"1111111{k}-22222222-33333333-44444444-55555555" for k in range(3)]


def _slice(k: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(_dicom()))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.3.4.{k + 1}"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _series_event(**extra):
    return _pre_event(source=SERIES, labels=["Nodule"], schema="ct-nodule", level="series",
                      instances=list(SLICES), frames=len(SLICES), **extra)


def test_series_task_stages_every_slice_in_order(aws):
    FakeOrthanc.files = {i: _slice(k) for k, i in enumerate(SLICES)}
    response = prelabel.lambda_handler(_series_event(), None)
    task = response["taskInput"]
    assert response["isHumanAnnotationRequired"] is True
    assert task["source"] == SERIES and task["level"] == "series"
    assert task["slices"] == [{"image": f"s3://{BUCKET}/chest-1/{i}.dcm", "instance": i, "frame": 0} for i in SLICES]
    assert task["image"] == task["slices"][0]["image"]
    assert task["image_geometry"] == {"rows": 128, "columns": 128, "frames": 3}
    staged = [pydicom.dcmread(io.BytesIO(aws.get_object(Bucket=BUCKET, Key=f"chest-1/{i}.dcm")["Body"].read()))
              for i in SLICES]
    original = pydicom.dcmread(io.BytesIO(_dicom()))
    assert len({ds.StudyInstanceUID for ds in staged}) == 1 and staged[0].StudyInstanceUID != original.StudyInstanceUID
    assert len({ds.SeriesInstanceUID for ds in staged}) == 1 and len({ds.SOPInstanceUID for ds in staged}) == 3
    assert all(ds.PatientIdentityRemoved == "YES" for ds in staged)
    # staging is idempotent per slice
    FakeOrthanc.fetched.clear()
    assert prelabel.lambda_handler(_series_event(), None) == response and FakeOrthanc.fetched == []
    json.dumps(response)


def test_multiframe_task_lists_its_frames(aws):
    mf = SLICES[0]
    FakeOrthanc.files = {mf: _slice(0)}
    task = prelabel.lambda_handler(_pre_event(source=mf, labels=["Nodule"], level="multiframe", instances=[mf],
                                              frames=2), None)["taskInput"]
    assert [(s["instance"], s["frame"]) for s in task["slices"]] == [(mf, 0), (mf, 1)]
    assert FakeOrthanc.fetched == [mf]  # staged once
    with pytest.raises(ValueError, match="a multiframe task has instances == \\[source\\]"):
        prelabel.lambda_handler(_pre_event(source=mf, labels=["Nodule"], level="multiframe", instances=SLICES,
                                           frames=2), None)


def test_missing_slice_skips_the_task_with_the_reason(aws):
    FakeOrthanc.files = {SLICES[0]: _slice(0)}
    response = prelabel.lambda_handler(_series_event(), None)
    assert response["isHumanAnnotationRequired"] is False
    assert response["taskInput"]["error"].startswith(f"Orthanc has no instance {SLICES[1]} (HTTP 404) nor 1 more "
                                                     f"of series {SERIES}")


def test_too_large_for_gt_is_refused_with_the_limit_and_what_to_do(aws, tmp_path):
    many = [f"{k:08x}-22222222-33333333-44444444-55555555" for k in range(500)]
    response = prelabel.lambda_handler(_pre_event(source=SERIES, labels=["Nodule"], level="series",
                                                  instances=many, frames=len(many)), None)
    assert response["isHumanAnnotationRequired"] is False and FakeOrthanc.fetched == []
    assert "'instances' is 23,501 characters (500 slices), above Ground Truth's 20,000 per attribute; split the " \
           "series" in response["taskInput"]["error"]
    assert gt_prelabel.series_size_problem({"source": SERIES, "instances": many[:400]}) is None
    huge = {"source": SERIES, **{f"k{n}": "x" * 19_000 for n in range(6)}}
    assert "above Ground Truth's 100,000 per data object" in gt_prelabel.series_size_problem(huge)

    schema = LabelSchema.from_dict({"name": "ct-nodule", "task_type": "classification+roi",
                                    "labels": [{"name": "Nodule", "shapes": ["ellipse"]}]})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"source": SERIES, "labels": ["Nodule"], "task_type": "classification+roi",
                                    "schema": "ct-nodule", "level": "series", "instances": many}) + "\n")
    with pytest.raises(GtError, match=r"m.jsonl:1: its 'instances' is 23,501 characters"):
        _check_manifest(str(manifest), schema)


def test_worker_template_hands_the_slices_to_the_viewer():
    """The rendered template carries the staged slices, each granted, as the viewer's stack form."""
    import html.parser
    from pathlib import Path

    from labeling.gt.render import render_template

    template = (Path(gt_prelabel.__file__).parent / "worker_template.liquid.html").read_text()
    slices = [{"image": f"s3://{BUCKET}/ct-1/{i}.dcm", "instance": i, "frame": 0} for i in SLICES[:2]]
    page = render_template(template, {"image": slices[0]["image"], "labels": ["Nodule"], "slices": slices,
                                      "task_type": "classification+roi", "schema": "ct-nodule"})

    class Attrs(html.parser.HTMLParser):
        found = None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if "data-slices" in attrs:
                Attrs.found = attrs["data-slices"]

    Attrs().feed(page)
    assert json.loads(Attrs.found) == [{"url": f"https://{BUCKET}.s3.amazonaws.com/ct-1/{i}.dcm", "instance": i,
                                        "frame": 0} for i in SLICES[:2]]
    image_only = render_template(template, {"image": slices[0]["image"], "labels": ["Nodule"]})
    assert "data-slices=" not in image_only
