"""Synthetic CT series (devkit/synth_series.py): geometry tags, ground truth against the pixels,
the multi-frame instance, determinism, the ``synth --series`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from devkit.cli import main as cli_main
from labeling.contracts.schema import load_schema
from labeling.dicom.series import SliceInfo, dataset_tags, multiframe_task, order_series
from devkit.synth_series import (
    FINDING,
    SCHEMA_PATH,
    SLICE_SPACING_MM,
    generate_series_dataset,
    make_series_params,
)
from labeling.orthanc.upload import orthanc_instance_id

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, list[dict], dict[str, pydicom.Dataset]]:
    out = tmp_path_factory.mktemp("ct") / "out"
    # prevalence 1: every series has nodules, so the ground-truth checks always have something to check
    generate_series_dataset(out, series=2, slices=16, size=64, seed=5, prevalence=1.0, progress=False)
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    files = {str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm")))}
    return out, truth, files


def test_series_geometry_tags(dataset):
    _, truth, files = dataset
    assert [t["level"] for t in truth] == ["series", "multiframe", "series"]
    first = truth[0]
    slices = [files[uid] for uid in first["sop_instance_uids"]]
    assert len(slices) == 16
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert len({str(getattr(ds, key)) for ds in slices}) == 1, key
    for k, ds in enumerate(slices):
        assert ds.Modality == "CT" and ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert int(ds.InstanceNumber) == k + 1
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert float(ds.PixelSpacing[0]) == pytest.approx(320 / 64)
        assert float(ds.SliceThickness) == SLICE_SPACING_MM
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept), ds.RescaleType) == (1, -1024, "HU")
    z = [float(ds.ImagePositionPatient[2]) for ds in slices]
    assert np.allclose(np.diff(z), -SLICE_SPACING_MM, atol=1e-3)  # head to feet with InstanceNumber

    # the series library sees a clean series, ordered feet to head (increasing z along +z)
    infos = [SliceInfo.from_tags(orthanc_instance_id(str(ds.PatientID), str(ds.StudyInstanceUID),
                                                     str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)),
                                 dataset_tags(ds)) for ds in slices]
    task = order_series("series", infos[::-1][3:] + infos[::-1][:3])
    assert task.flags == ()
    assert list(task.instances) == first["instances"][::-1]
    assert task.geometry["spacing"] == SLICE_SPACING_MM


def hu(ds: pydicom.Dataset) -> np.ndarray:
    return ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_ground_truth_rois_outline_the_rendered_nodules(dataset):
    _, truth, files = dataset
    checked = 0
    for record in (t for t in truth if t["level"] == "series"):
        assert record["labels"] == [{"name": FINDING, "present": True}] and record["nodules"]
        by_sop = {uid: files[uid] for uid in record["sop_instance_uids"]}
        for roi in record["rois"]:
            assert roi["frame"] == 0 and roi["shape"] == "ellipse"
            index = record["sop_instance_uids"].index(roi["sop_instance_uid"])
            assert roi["instance"] == record["instances"][index]
            (x0, y0), (x1, y1) = roi["points"]
            radius = (x1 - x0) / 2
            if radius < 2:
                continue  # a cap of the ball: too few pixels to measure
            image = hu(by_sop[roi["sop_instance_uid"]])
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            assert image[int(cy), int(cx)] > -200  # soft tissue at the centre
            cols, rows = np.meshgrid(np.arange(image.shape[1]) + 0.5, np.arange(image.shape[0]) + 0.5)
            near = (cols - cx) ** 2 + (rows - cy) ** 2 <= (radius + 2) ** 2
            dense = np.count_nonzero((image > -400) & near)
            # the pixels above -400 HU near the ROI fill its circle (within a pixel ring)
            assert dense == pytest.approx(np.pi * radius ** 2, rel=0.35, abs=6)
            checked += 1
    assert checked >= 4


def test_multiframe_instance_matches_the_series(dataset):
    _, truth, files = dataset
    series, multi = truth[0], truth[1]
    mf = files[multi["sop_instance_uids"][0]]
    assert mf.SOPClassUID == pydicom.uid.EnhancedCTImageStorage and int(mf.NumberOfFrames) == 16
    assert mf.StudyInstanceUID == files[series["sop_instance_uids"][0]].StudyInstanceUID
    assert mf.FrameOfReferenceUID == files[series["sop_instance_uids"][0]].FrameOfReferenceUID
    frames = mf.pixel_array
    for k, uid in enumerate(series["sop_instance_uids"]):
        assert np.array_equal(frames[k], files[uid].pixel_array)
        position = mf.PerFrameFunctionalGroupsSequence[k].PlanePositionSequence[0].ImagePositionPatient
        assert [float(v) for v in position] == [float(v) for v in files[uid].ImagePositionPatient]
    assert len(multi["rois"]) == len(series["rois"])
    assert {r["instance"] for r in multi["rois"]} == set(multi["instances"])
    assert sorted(r["frame"] for r in multi["rois"]) == sorted(
        series["sop_instance_uids"].index(r["sop_instance_uid"]) for r in series["rois"])

    task = multiframe_task(SliceInfo.from_tags("mf", dataset_tags(mf)))
    assert task.frames == 16 and task.flags == () and task.geometry["spacing"] == SLICE_SPACING_MM


@pytest.mark.parametrize("prevalence, copied", [(0.5, 1), (0.0, 0)])
def test_the_multiframe_copy_can_come_from_the_first_series_with_a_nodule(tmp_path, prevalence, copied):
    # Seed 0 at prevalence 0.5: series 0 has no nodule, series 1 has two; with none anywhere: series 0.
    out = tmp_path / "out"
    assert cli_main(["synth", "--out", str(out), "--series", "2", "--slices", "8", "--size", "64", "--seed", "0",
                     "--prevalence", str(prevalence), "--multiframe-from", "nodule", "--no-progress"]) == 0
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    levels = ["series", "series"]
    levels.insert(copied + 1, "multiframe")
    assert [t["level"] for t in truth] == levels
    series, multi = truth[copied], truth[copied + 1]
    assert multi["patient_id"] == series["patient_id"] and multi["nodules"] == series["nodules"]
    assert bool(multi["rois"]) == (prevalence > 0)
    assert all(0 <= r["frame"] < multi["image"]["frames"] for r in multi["rois"])
    assert {r["frame"] for r in multi["rois"]} == {series["sop_instance_uids"].index(r["sop_instance_uid"])
                                                  for r in series["rois"]}


def test_an_unknown_multiframe_source_is_refused(capsys):
    with pytest.raises(ValueError, match="multiframe_from: must be one of first, nodule, got 'last'"):
        make_series_params(multiframe_from="last")
    with pytest.raises(SystemExit):
        cli_main(["synth", "--out", "x", "--series", "1", "--multiframe-from", "last"])
    assert "--multiframe-from: invalid choice: 'last'" in capsys.readouterr().err


def test_same_parameters_same_files_and_uids(dataset, tmp_path):
    out, truth, _ = dataset
    again = tmp_path / "again"
    generate_series_dataset(again, series=1, slices=16, size=64, seed=5, prevalence=1.0, progress=False)
    first = json.loads((again / "ground_truth.jsonl").read_text().splitlines()[0])
    assert first == truth[0]  # the number of series does not change series 0
    path = next(again.rglob(f"{first['sop_instance_uids'][4]}.dcm"))
    assert path.read_bytes() == next(out.rglob(path.name)).read_bytes()
    other = tmp_path / "other"
    generate_series_dataset(other, series=1, slices=16, size=64, seed=6, prevalence=1.0, multiframe=False,
                            progress=False)
    assert json.loads((other / "ground_truth.jsonl").read_text())["sop_instance_uids"][0] != first["sop_instance_uids"][0]


def test_schema_lists_the_finding():
    schema = load_schema(REPO / SCHEMA_PATH)
    assert schema.label_names == (FINDING,) and schema.label(FINDING).shapes == ("ellipse",)


@pytest.mark.parametrize("kw, message", [
    ({"slices": 4}, "slices: must be between 8 and 512, got 4"),
    ({"size": 1024}, "size: must be between 64 and 512, got 1024"),
    ({"prevalence": 2}, "prevalence: must be between 0 and 1, got 2"),
])
def test_bad_parameters_name_the_parameter(kw, message):
    with pytest.raises(ValueError, match=message):
        make_series_params(**kw)


def test_cli_series(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["synth", "--out", str(out), "--series", "1", "--slices", "8", "--size", "64",
                     "--prevalence", "0", "--no-progress"]) == 0
    assert "1 series (9 images, 1 multi-frame) with 0 nodules" in capsys.readouterr().out
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["counts"]["images"] == 9 and summary["parameters"]["slices"] == 8
    assert cli_main(["synth", "--out", str(tmp_path / "x"), "--series", "1", "--prevalence", "Opacity=0.5"]) == 2
    assert "with --series give one probability" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
