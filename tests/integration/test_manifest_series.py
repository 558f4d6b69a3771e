"""``manifest --level series`` against the real Orthanc (tier 2): synthetic CT series uploaded, then
one line per series (slices in order along the normal) and per multi-frame instance; a gapped
series flagged, not reordered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labeling.cli import main as cli_main
from labeling.manifest.build import build_manifest
from labeling.manifest.filters import parse_filters
from labeling.manifest.format import read_manifest
from labeling.contracts.schema import load_schema
from devkit.synth_series import SLICE_SPACING_MM, generate_series_dataset

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SEED = 9140  # patients SYNCT9140-*: this module's own
SLICES = 12


@pytest.fixture(scope="module")
def uploaded(client, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ct-series") / "data"
    generate_series_dataset(out, series=2, slices=SLICES, size=64, seed=SEED, prevalence=1.0, progress=False)
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    gapped = truth[2]  # the second patient's series: slice 5 (InstanceNumber 6) never reaches Orthanc
    missing = gapped["sop_instance_uids"][5]
    for path in sorted(out.rglob("*.dcm")):
        if path.stem != missing:
            client.upload(path.read_bytes())
    return truth


def test_series_manifest_orders_slices_and_lists_multiframe(client, uploaded, tmp_path, connection, monkeypatch):
    monkeypatch.setenv("ORTHANC_URL", connection.url)
    monkeypatch.setenv("ORTHANC_USERNAME", connection.username)
    monkeypatch.setenv("ORTHANC_PASSWORD", connection.password)
    out, report = tmp_path / "series.jsonl", tmp_path / "report.json"
    code = cli_main(["manifest", "--schema", str(REPO / "schemas" / "ct-nodule.yaml"), "--patient-id",
                     f"SYNCT{SEED}-*", "--level", "series", "--out", str(out), "--report", str(report), "--quiet"])
    assert code == 0
    lines = read_manifest(out)
    by_level = {}
    for line in lines:
        by_level.setdefault(line.extra["level"], []).append(line)
    assert len(by_level["series"]) == 2 and len(by_level["multiframe"]) == 1

    clean, gapped = sorted(by_level["series"], key=lambda l: l.series_instance_uid != uploaded[0]["series_instance_uid"])
    series_truth = uploaded[0]
    # ordered by increasing z = the reverse of InstanceNumber (synth numbers head to feet)
    assert list(clean.extra["instances"]) == series_truth["instances"][::-1]
    assert clean.frames == SLICES and clean.extra["flags"] == []
    geometry = clean.extra["geometry"]
    assert geometry["order"] == "position" and geometry["spacing"] == SLICE_SPACING_MM
    assert (geometry["rows"], geometry["columns"]) == (64, 64) == (clean.rows, clean.columns)  # answers checked
    assert geometry["pixel_spacing"] == [5.0, 5.0]
    assert geometry["orientation"] == [1, 0, 0, 0, 1, 0]
    assert clean.source == series_truth["source"]  # the Orthanc series ID, as synth predicts it
    assert client.request("GET", f"/series/{clean.source}").json()["MainDicomTags"]["SeriesInstanceUID"] \
        == series_truth["series_instance_uid"]

    # Orthanc's own slice ordering (``/series/{id}/ordered-slices``, by position along the normal)
    # is an independent implementation: same order
    theirs = [short[0] for short in client.request("GET", f"/series/{clean.source}/ordered-slices").json()["SlicesShort"]]
    assert theirs == list(clean.extra["instances"])

    flags = gapped.extra["flags"]
    assert [f["code"] for f in flags] == ["gap"]
    assert flags[0]["spacing_mm"] == [2 * SLICE_SPACING_MM]
    expected = [i for i in uploaded[2]["instances"] if i != uploaded[2]["instances"][5]][::-1]
    assert list(gapped.extra["instances"]) == expected

    multi = by_level["multiframe"][0]
    assert multi.source == uploaded[1]["source"] == uploaded[1]["instances"][0] and multi.frames == SLICES
    assert multi.extra["instances"] == [multi.source]
    assert multi.extra["geometry"]["spacing"] == SLICE_SPACING_MM
    assert multi.extra["geometry"]["slice_positions"] == sorted(multi.extra["geometry"]["slice_positions"],
                                                                reverse=True)  # file order: head to feet
    assert multi.sop_instance_uid == uploaded[1]["sop_instance_uids"][0]

    data = json.loads(report.read_text())
    assert data["level"] == "series" and data["series_flags"] == {"gap": 1}
    assert data["requests"]["tags"] == 3  # one per task, never one per slice


def test_limit_counts_tasks(client, uploaded):
    schema = load_schema(REPO / "schemas" / "ct-nodule.yaml")
    result = build_manifest(client, schema_name=schema.name, labels=schema.label_names, task_type=schema.task_type,
                            filters=parse_filters(patient_id=f"SYNCT{SEED}-*"), level="series", limit=2)
    assert len(result.lines) == 2 and result.limited_out == 1 and result.images == 3


def test_instance_level_is_unchanged(client, uploaded):
    schema = load_schema(REPO / "schemas" / "ct-nodule.yaml")
    result = build_manifest(client, schema_name=schema.name, labels=schema.label_names, task_type=schema.task_type,
                            filters=parse_filters(patient_id=f"SYNCT{SEED}-*"))
    assert len(result.lines) == 2 * SLICES - 1 + 1  # 2 series (one gapped) + 1 multi-frame
    assert all("level" not in line.extra for line in result.lines)
    assert "tags" not in result.requests


def test_series_sr_stored_in_orthanc_references_the_right_slices(client, uploaded):
    import io

    import pydicom

    from labeling.dicom.sr import Observer, build_series_sr, read_annotation_sr, store_sr

    series, multi = uploaded[0], uploaded[1]

    def header(instance_id: str) -> pydicom.Dataset:
        data = client.request("GET", f"/instances/{instance_id}/file").content
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)

    # the ground truth's own ROIs as the answer: every nodule outline on its slice
    sources = {instance_id: header(instance_id) for instance_id in series["instances"]}
    answer = {"labels": series["labels"], "rois": series["rois"]}
    sr_id = store_sr(client, build_series_sr(sources, answer, [Observer.person("Reader^One")]))
    stored = pydicom.dcmread(io.BytesIO(client.request("GET", f"/instances/{sr_id}/file").content))
    back = read_annotation_sr(stored, roi_references=True)
    assert [(r["sop_instance_uid"], r["frame"]) for r in back["rois"]] == [
        (r["sop_instance_uid"], 0) for r in series["rois"]]
    sr_study = client.request("GET", f"/instances/{sr_id}/study").json()["ID"]
    slice_study = client.request("GET", f"/instances/{series['instances'][0]}/study").json()["ID"]
    assert sr_study == slice_study

    mf_id = multi["instances"][0]
    mf_sr = store_sr(client, build_series_sr({mf_id: header(mf_id)}, {"rois": multi["rois"]},
                                             [Observer.person("Reader^One")]))
    back = read_annotation_sr(pydicom.dcmread(io.BytesIO(client.request("GET", f"/instances/{mf_sr}/file").content)),
                              roi_references=True)
    assert [r["frame"] for r in back["rois"]] == [r["frame"] for r in multi["rois"]]
    assert {r["sop_instance_uid"] for r in back["rois"]} == {multi["sop_instance_uids"][0]}


def test_candidates_without_tags_are_completed_by_one_bulk_read(client, uploaded):
    """A walk that kept no MainDicomTags (e.g. one served from a saved index) gives the same lines."""
    from dataclasses import replace

    from labeling.manifest.query import BuildResult, _Counted, _SilentReporter, find_candidates
    from labeling.manifest.series import series_lines

    result = BuildResult(lines=[])
    orthanc = _Counted(client, result.requests)
    candidates = sorted(find_candidates(orthanc, parse_filters(patient_id=f"SYNCT{SEED}-*"), result, _SilentReporter()),
                        key=lambda c: c.sort_key())
    kw = dict(schema_name="ct-nodule", labels=["Nodule"], task_type="classification+roi", include_phi=False,
              reporter=_SilentReporter())
    full = series_lines(orthanc, candidates, result, **kw)
    bulk_before = result.requests["bulk"]
    bare = series_lines(orthanc, [replace(c, tags={}, series_id="") for c in candidates], result, **kw)
    assert [line.to_dict() for line in bare] == [line.to_dict() for line in full]
    assert result.requests["bulk"] - bulk_before == 1  # 24 instances: one chunk


def test_series_lines_from_the_saved_index_equal_the_find(client, uploaded, tmp_path):
    """The index (labeling/manifest/index.py) keeps the ordering tags and the per-task file tags: the
    same lines, and a rebuild of unchanged series reads neither instances nor files."""
    schema = load_schema(REPO / "schemas" / "ct-nodule.yaml")
    kw = dict(schema_name=schema.name, labels=schema.label_names, task_type=schema.task_type,
              filters=parse_filters(patient_id=f"SYNCT{SEED}-*"), level="series")
    found = build_manifest(client, **kw)
    full = build_manifest(client, use_index=True, index_file=tmp_path / "index.json", **kw)
    incremental = build_manifest(client, use_index=True, index_file=tmp_path / "index.json", **kw)
    assert (full.index, incremental.index) == ("full", "incremental")
    for result in (full, incremental):
        assert [line.to_dict() for line in result.lines] == [line.to_dict() for line in found.lines]
    # positions came with the listing: no more bulk reads than an instance-level build (which reads
    # the SOP class of whatever else the server holds under a Modality that does not tell)
    instance_level = build_manifest(client, use_index=True, index_file=tmp_path / "instances.json",
                                    **{**kw, "level": "instance"})
    assert full.requests["bulk"] == instance_level.requests["bulk"] and full.requests["tags"] == 3
    assert "bulk" not in incremental.requests and "tags" not in incremental.requests


def test_series_index_never_serves_a_modified_slice_stale(client, tmp_path):
    """A slice stored again with other geometry (same UIDs, so the same Orthanc ID) is re-read: its
    position and the series' PixelSpacing come from the new file, not from the saved index."""
    import io

    import pydicom

    seed = SEED + 1
    out = tmp_path / "data"
    generate_series_dataset(out, series=1, slices=8, size=64, seed=seed, prevalence=0.0, multiframe=False,
                            progress=False)
    files = {pydicom.dcmread(path, stop_before_pixels=True).InstanceNumber: path for path in sorted(out.rglob("*.dcm"))}
    ids = {number: client.upload(path.read_bytes()).instance_id for number, path in files.items()}
    schema = load_schema(REPO / "schemas" / "ct-nodule.yaml")
    kw = dict(schema_name=schema.name, labels=schema.label_names, task_type=schema.task_type,
              filters=parse_filters(patient_id=f"SYNCT{seed}-*"), level="series", use_index=True,
              index_file=tmp_path / "index.json")
    try:
        before = build_manifest(client, **kw)
        (line,) = before.lines
        assert line.extra["geometry"]["pixel_spacing"] == [5.0, 5.0] and line.extra["flags"] == []
        assert list(line.extra["instances"]) == [ids[n] for n in range(8, 0, -1)]  # by position, feet to head

        # InstanceNumber 1 (the slice whose file gives the series' PixelSpacing) moves below slice 8
        ds = pydicom.dcmread(files[1])
        ds.PixelSpacing = [2.5, 2.5]
        ds.ImagePositionPatient = [float(v) for v in ds.ImagePositionPatient[:2]] + \
            [float(pydicom.dcmread(files[8], stop_before_pixels=True).ImagePositionPatient[2]) - 10.0]
        modified = io.BytesIO()
        ds.save_as(modified, enforce_file_format=True)
        client.delete("instances", ids[1])
        assert client.upload(modified.getvalue()).instance_id == ids[1]

        after = build_manifest(client, **kw)
        assert after.index == "incremental"
        (line,) = after.lines
        assert line.extra["geometry"]["pixel_spacing"] == [2.5, 2.5]
        assert list(line.extra["instances"])[0] == ids[1]  # ordered by its new position
        assert [line.to_dict() for line in after.lines] == [
            line.to_dict() for line in build_manifest(client, **{**kw, "use_index": False}).lines]
        assert after.requests["tags"] == 1  # the modified first slice's file, read again
    finally:
        for instance_id in ids.values():
            client.delete("instances", instance_id, missing_ok=True)
