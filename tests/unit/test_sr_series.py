"""Series SRs (labeling/dicom/sr.py build_series_sr): SCOORDs on the right slice and frame, series-level
findings; read back with highdicom."""

from __future__ import annotations

import io
import json
import re

import highdicom as hd
import pydicom
import pytest

from labeling.dicom.sr import Observer, SRError, build_annotation_sr, build_series_sr, read_annotation_sr, sr_bytes
from devkit.synth_series import generate_series_dataset

OBSERVERS = [Observer.person("Reader^One", login="r1")]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[list[dict], dict[str, pydicom.Dataset]]:
    out = tmp_path_factory.mktemp("sr") / "ct"
    generate_series_dataset(out, series=1, slices=8, size=64, seed=77, prevalence=1.0, progress=False)
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    headers = {p.stem: pydicom.dcmread(p, stop_before_pixels=True) for p in out.rglob("*.dcm")}
    return truth, headers


def sources_of(record: dict, headers: dict) -> dict[str, pydicom.Dataset]:
    return {orthanc_id: headers[sop] for orthanc_id, sop in zip(record["instances"], record["sop_instance_uids"])}


def reread(sr) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(sr_bytes(sr)))


def test_series_sr_references_each_rois_slice(synthetic):
    truth, headers = synthetic
    series = truth[0]
    sources = sources_of(series, headers)
    ids = series["instances"]
    answer = {"labels": [{"name": "Nodule", "present": True, "confidence": 0.9}],
              "rois": [{"label": "Nodule", "shape": "ellipse", "points": [[10, 10], [20, 22]], "instance": ids[2]},
                       {"label": "Nodule", "shape": "rectangle", "points": [[30, 30], [40, 41]], "instance": ids[5],
                        "frame": 0}]}
    ds = reread(build_series_sr(sources, answer, OBSERVERS))
    back = read_annotation_sr(ds, roi_references=True)
    assert back["labels"] == [{"name": "Nodule", "present": True, "confidence": 0.9}]
    assert [(r["sop_instance_uid"], r["frame"]) for r in back["rois"]] == [
        (series["sop_instance_uids"][2], 0), (series["sop_instance_uids"][5], 0)]
    assert back["rois"][1]["shape"] == "rectangle" and back["rois"][1]["points"] == [[30.0, 30.0], [40.0, 41.0]]
    # single-frame slices: no Referenced Frame Number; the series-level label has no source image
    sr = hd.sr.Comprehensive3DSR.from_dataset(ds)
    report = sr.content
    rois = report.get_planar_roi_measurement_groups()
    for group, sop in zip(rois, (series["sop_instance_uids"][2], series["sop_instance_uids"][5])):
        ref = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
        assert ref.ReferencedSOPInstanceUID == sop and ref.ReferencedSOPClassUID == pydicom.uid.CTImageStorage
        assert "ReferencedFrameNumber" not in ref
    label_group = report.get_image_measurement_groups()[0]
    assert not label_group.source_images
    assert label_group.get_qualitative_evaluations()[0].value == hd.sr.CodedConcept("52101004", "SCT", "Present")
    # every slice is evidence, in the slices' study
    evidence = {item.ReferencedSOPInstanceUID for study in ds.CurrentRequestedProcedureEvidenceSequence
                for series_item in study.ReferencedSeriesSequence for item in series_item.ReferencedSOPSequence}
    assert evidence == set(series["sop_instance_uids"])
    assert ds.StudyInstanceUID == series["study_instance_uid"]


def test_multiframe_rois_carry_referenced_frame_numbers(synthetic):
    truth, headers = synthetic
    multi = truth[1]
    mf_id = multi["instances"][0]
    sources = {mf_id: headers[multi["sop_instance_uids"][0]]}
    answer = {"labels": [{"name": "Nodule", "present": True}],
              "rois": [{"label": "Nodule", "shape": "point", "points": [[5, 6]], "instance": mf_id, "frame": f}
                       for f in (0, 3, 7)]}
    ds = reread(build_series_sr(sources, answer, OBSERVERS))
    back = read_annotation_sr(ds, roi_references=True)
    assert [r["frame"] for r in back["rois"]] == [0, 3, 7]
    groups = hd.sr.Comprehensive3DSR.from_dataset(ds).content.get_planar_roi_measurement_groups()
    numbers = [int(g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber) for g in groups]
    assert numbers == [1, 4, 8]


@pytest.mark.parametrize("roi, message", [
    ({"instance": "nope"}, "rois[0].instance: 'nope' is not one of the 8 sources given"),
    ({}, "rois[0].instance: required in a series answer"),
    ({"instance": "FIRST", "frame": 1}, "rois[0].frame: frame 1 is outside the task's 1 frame(s)"),
])
def test_bad_references_name_the_roi(synthetic, roi, message):
    truth, headers = synthetic
    sources = sources_of(truth[0], headers)
    roi = {k: (truth[0]["instances"][0] if v == "FIRST" else v) for k, v in roi.items()}
    answer = {"rois": [{"label": "Nodule", "shape": "point", "points": [[1, 1]], **roi}]}
    with pytest.raises(SRError, match=re.escape(message)):
        build_series_sr(sources, answer, OBSERVERS)


def test_image_sr_refuses_a_series_answer(synthetic):
    truth, headers = synthetic
    source = headers[truth[0]["sop_instance_uids"][0]]
    answer = {"rois": [{"label": "Nodule", "shape": "point", "points": [[1, 1]], "instance": truth[0]["instances"][3]}]}
    with pytest.raises(SRError, match=r"rois\[0\].instance: a series answer .* build_series_sr"):
        build_annotation_sr(source, answer, OBSERVERS)


def test_frames_are_checked_per_source_when_slices_and_a_multiframe_mix(synthetic):
    truth, headers = synthetic
    sources = {**sources_of(truth[0], headers), truth[1]["instances"][0]: headers[truth[1]["sop_instance_uids"][0]]}
    mf_id, slice_id = truth[1]["instances"][0], truth[0]["instances"][0]
    ok = {"rois": [{"label": "Nodule", "shape": "point", "points": [[1, 1]], "instance": mf_id, "frame": 6}]}
    back = read_annotation_sr(reread(build_series_sr(sources, ok, OBSERVERS)), roi_references=True)
    assert back["rois"][0]["frame"] == 6
    bad = {"rois": [{"label": "Nodule", "shape": "point", "points": [[1, 1]], "instance": slice_id, "frame": 6}]}
    with pytest.raises(SRError, match=re.escape(f"rois[0].frame 6 is outside instance {slice_id!r}'s 1 frame(s)")):
        build_series_sr(sources, bad, OBSERVERS)
