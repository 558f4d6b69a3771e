"""The synthetic chest X-ray dataset (devkit/synth.py): DICOM validity, determinism, ground truth."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.uid import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian

from devkit import synth
from labeling.contracts.schema import load_schema
from devkit.synth import OutputDirError, generate_dataset, iter_studies
from devkit.synth_dicom import ground_truth_record
from devkit.synth_draw import render_image
from devkit.synth_plan import (FINDINGS, GROUND_TRUTH_FILE, ROI_SHAPES, SUMMARY_FILE, ImagePlan, make_params,
                               plan_patient, plan_study)

REPO = Path(__file__).resolve().parents[2]
SMALL = {"patients": 4, "studies_per_patient": 2, "size": 64, "seed": 7, "prevalence": 0.6, "progress": False, "workers": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    generate_dataset(out, **SMALL)
    return out


def records(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / GROUND_TRUTH_FILE).read_text().splitlines()]


def file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- the schema and synth agree --------------------------------------------------------------


def test_demo_schema_lists_exactly_the_findings_synth_draws() -> None:
    schema = load_schema(REPO / synth.SCHEMA_PATH)
    assert schema.label_names == FINDINGS
    assert schema.has_rois
    for name in FINDINGS:
        assert ROI_SHAPES[name] in schema.label(name).shapes, name


def test_ground_truth_uses_schema_order_and_shapes(dataset: Path) -> None:
    for record in records(dataset):
        assert [label["name"] for label in record["labels"]] == list(FINDINGS)
        for roi in record["rois"]:
            assert roi["shape"] == ROI_SHAPES[roi["label"]]


# --- DICOM -----------------------------------------------------------------------------------


def test_files_are_valid_dx_part10(dataset: Path) -> None:
    files = sorted(dataset.rglob("*.dcm"))
    assert len(files) == 8
    for path in files:
        raw = path.read_bytes()
        assert raw[128:132] == b"DICM"  # PS3.10 7.1 preamble + prefix
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == DigitalXRayImageStorageForPresentation
        assert ds.Modality == "DX"
        assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 12, 11, 0)
        assert ds.PhotometricInterpretation == "MONOCHROME2"
        assert ds.SamplesPerPixel == 1
        assert (ds.Rows, ds.Columns) == (64, 64)
        assert len(ds.PixelData) == 64 * 64 * 2
        assert ds.BodyPartExamined == "CHEST"
        assert ds.ViewPosition in ("PA", "AP")
        assert ds.Manufacturer == "dicom-annotate synth"
        assert ds.PatientSex in ("F", "M")
        assert len(ds.AccessionNumber) <= 16
        assert ds.PixelSpacing and ds.ImagerPixelSpacing
        assert 0 < float(ds.WindowWidth) <= 4095
        pixels = ds.pixel_array
        assert pixels.dtype == np.uint16 and int(pixels.max()) <= 4095
        assert pixels.std() > 100  # an image, not a constant


def test_cr_and_14_bits(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "cr", **{**SMALL, "patients": 1, "studies_per_patient": 1, "modality": "CR", "bits_stored": 14})
    (path,) = (tmp_path / "cr").rglob("*.dcm")
    ds = pydicom.dcmread(path)
    assert ds.Modality == "CR"
    assert ds.SOPClassUID == ComputedRadiographyImageStorage
    assert (ds.BitsStored, ds.HighBit) == (14, 13)
    assert "PresentationIntentType" not in ds  # a DX-only attribute
    assert 4095 < int(ds.pixel_array.max()) <= 16383


def test_patient_study_series_structure(dataset: Path) -> None:
    recs = records(dataset)
    assert len(recs) == 8
    assert len({r["patient_id"] for r in recs}) == 4
    assert len({r["study_instance_uid"] for r in recs}) == 8
    assert len({r["series_instance_uid"] for r in recs}) == 8
    assert len({r["sop_instance_uid"] for r in recs}) == 8
    for r in recs:
        assert r["file"] == f"{r['patient_id']}/{r['study_instance_uid']}/{r['sop_instance_uid']}.dcm"
        assert r["image"] == {"rows": 64, "columns": 64, "frame": 0}
        ds = pydicom.dcmread(dataset / r["file"], stop_before_pixels=True)
        assert (ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID) == (
            r["patient_id"], r["study_instance_uid"], r["series_instance_uid"], r["sop_instance_uid"],
        )
    for patient_dir in (p for p in dataset.iterdir() if p.is_dir()):
        assert len(list(patient_dir.iterdir())) == 2  # two studies, one image each
    summary = json.loads((dataset / SUMMARY_FILE).read_text())
    assert summary["counts"] == {"patients": 4, "studies": 8, "series": 8, "images": 8}
    for name in FINDINGS:
        present = sum(1 for r in recs for label in r["labels"] if label["name"] == name and label["present"])
        assert summary["labels"][name]["present"] == present
    assert summary["parameters"]["seed"] == 7


def test_studies_per_patient_range() -> None:
    params = make_params(patients=30, studies_per_patient=(1, 3), size=64)
    counts = [plan_patient(params, p).studies for p in range(30)]
    assert set(counts) == {1, 2, 3}


# --- determinism -----------------------------------------------------------------------------


def test_same_seed_same_bytes_and_uids(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_dataset(again, **SMALL)
    assert file_hashes(again) == file_hashes(dataset)


def test_different_seed_different_uids_and_pixels(dataset: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    generate_dataset(other, **{**SMALL, "seed": 8})
    ours, theirs = records(dataset), records(other)
    for key in ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "patient_id"):
        assert not {r[key] for r in ours} & {r[key] for r in theirs}, key
    pixels = lambda root: {hashlib.sha256(pydicom.dcmread(p).PixelData).hexdigest() for p in root.rglob("*.dcm")}  # noqa: E731
    assert not pixels(dataset) & pixels(other)


def test_worker_processes_do_not_change_the_output(dataset: Path, tmp_path: Path) -> None:
    parallel = tmp_path / "parallel"
    generate_dataset(parallel, **{**SMALL, "workers": 2})
    assert file_hashes(parallel) == file_hashes(dataset)


def test_patient_count_does_not_change_existing_patients() -> None:
    few, many = make_params(patients=2, size=64), make_params(patients=5, size=64)
    a = plan_study(few, plan_patient(few, 1), 0)
    b = plan_study(many, plan_patient(many, 1), 0)
    assert (a.sop_uid, a.study_uid, a.patient.patient_id) == (b.sop_uid, b.study_uid, b.patient.patient_id)
    assert np.array_equal(render_image(a.plan), render_image(b.plan))


def test_uids_change_with_content_parameters() -> None:
    base = make_params(size=64)
    bigger = make_params(size=128)
    assert plan_study(base, plan_patient(base, 0), 0).sop_uid != plan_study(bigger, plan_patient(bigger, 0), 0).sop_uid


# --- ground truth against pixels -------------------------------------------------------------


def roi_mask(roi: dict[str, Any], size: int) -> np.ndarray:
    """Pixels (by centre) inside an ROI of the label shape."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    pts = np.asarray(roi["points"], dtype=float)
    if roi["shape"] in ("rectangle", "ellipse"):
        (x0, y0), (x1, y1) = pts
        if roi["shape"] == "rectangle":
            return (xx >= min(x0, x1)) & (xx <= max(x0, x1)) & (yy >= min(y0, y1)) & (yy <= max(y0, y1))
        cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, abs(x1 - x0) / 2, abs(y1 - y0) / 2
        return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1
    inside = np.zeros((size, size), dtype=bool)  # even-odd rule
    for (xa, ya), (xb, yb) in zip(pts, np.roll(pts, 1, axis=0)):
        crosses = (ya > yy) != (yb > yy)
        with np.errstate(divide="ignore", invalid="ignore"):
            inside ^= crosses & (xx < (xb - xa) * (yy - ya) / (yb - ya) + xa)
    return inside


def only(plan: ImagePlan, name: str) -> ImagePlan:
    """The plan with every finding but ``name`` switched off."""
    kept = tuple(f if f.name == name else dataclasses.replace(f, present=False) for f in plan.findings)
    return dataclasses.replace(plan, findings=kept)


def test_ground_truth_matches_the_pixels(dataset: Path) -> None:
    """Each finding, drawn alone, lies inside its ROIs, and its ROIs are not mostly empty."""
    params = make_params(**{k: v for k, v in SMALL.items() if k not in ("progress", "workers")})
    by_uid = {r["sop_instance_uid"]: r for r in records(dataset)}
    checked = set()
    for study in iter_studies(params):
        record = by_uid[study.sop_uid]
        assert record == ground_truth_record(study)
        pixels = pydicom.dcmread(dataset / record["file"]).pixel_array
        assert np.array_equal(pixels, render_image(study.plan))  # the file is the plan's image
        clean = render_image(study.plan, findings=False).astype(np.int64)
        present = {label["name"] for label in record["labels"] if label["present"]}
        assert {roi["label"] for roi in record["rois"]} == present
        if not present:
            assert np.array_equal(pixels, clean)
        for name in present:
            diff = render_image(only(study.plan, name)).astype(np.int64) - clean
            rois = [roi for roi in record["rois"] if roi["label"] == name]
            masks = [roi_mask(roi, 64) for roi in rois]
            inside = diff[np.logical_or.reduce(masks)].sum() / diff.sum()
            # a Gaussian keeps 1 - e^-2 = 86.5% of its mass inside its 2-sigma ellipse
            assert inside >= (0.83 if ROI_SHAPES[name] == "ellipse" else 0.99), (name, inside)
            for roi, mask in zip(rois, masks):
                filled = (diff[mask] > 0.05 * diff[mask].max()).mean()
                assert filled >= 0.5, (roi, filled)  # a box twice too big would be ~1/3 filled
            checked.add(name)
    assert checked == set(FINDINGS)  # every finding was exercised


def test_prevalences_are_honoured_on_a_larger_set() -> None:
    wanted = {"Opacity": 0.1, "Device": 0.5, "Effusion": 0.85}
    params = make_params(patients=300, studies_per_patient=2, size=64, prevalence=wanted, seed=3)
    studies = list(iter_studies(params))
    for name, p in wanted.items():
        observed = np.mean([f.present for s in studies for f in s.plan.findings if f.name == name])
        assert abs(observed - p) < 0.06, (name, observed)  # 600 images: 4 standard deviations at most


def test_prevalence_zero_and_one() -> None:
    params = make_params(patients=10, size=64, prevalence={"Opacity": 0.0, "Device": 1.0})
    for study in iter_studies(params):
        present = {f.name: f.present for f in study.plan.findings}
        assert present["Opacity"] is False and present["Device"] is True


# --- parameters and output directory ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": 32}, "size: must be between 64 and 2048, got 32"),
        ({"patients": 0}, "patients: must be between 1"),
        ({"studies_per_patient": (3, 1)}, "studies_per_patient: range 3-1 is empty"),
        ({"prevalence": 1.5}, "prevalence: must be between 0 and 1"),
        ({"prevalence": {"Pneumothorax": 0.2}}, "prevalence: unknown finding 'Pneumothorax'"),
        ({"modality": "CT"}, "modality: must be one of DX, CR"),
        ({"bits_stored": 16}, "bits_stored: must be 12 or 14"),
    ],
)
def test_bad_parameters_name_the_parameter(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        make_params(**kwargs)


def test_generate_dataset_takes_make_params_parameters_and_names_an_unknown_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="^size: must be between 64"):
        generate_dataset(tmp_path / "small", size=32, progress=False)
    with pytest.raises(TypeError, match="generate_dataset: no parameter patient, sizes"):
        generate_dataset(tmp_path / "typo", patient=2, sizes=64, progress=False)
    assert not (tmp_path / "small").exists() and not (tmp_path / "typo").exists()


def test_non_empty_out_is_refused_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="directory is not empty"):
        generate_dataset(out, **{**SMALL, "patients": 1})
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    generate_dataset(out, **{**SMALL, "patients": 1, "studies_per_patient": 1}, force=True)
    assert not (out / "old.txt").exists()
    assert (out / GROUND_TRUTH_FILE).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging or old copy left


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fail_on_second(params, root, job):  # type: ignore[no-untyped-def]
        calls.append(job)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(params, root, job)

    real = synth.write_image
    monkeypatch.setattr(synth, "write_image", fail_on_second)
    out = tmp_path / "new" / "deeper"
    with pytest.raises(RuntimeError, match="disk full"):
        generate_dataset(out, **SMALL)
    assert list(tmp_path.iterdir()) == []  # neither the output, a staging dir nor created parents


# --- command line ----------------------------------------------------------------------------


def synth_parser() -> argparse.ArgumentParser:
    from devkit.cli import build_parser  # the real parser: one-line errors come from labeling.cli

    return build_parser(["synth"])


def run_cli(argv: list[str]) -> int:
    args = synth_parser().parse_args(argv)
    return args.func(args)


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["synth", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--out", "--patients", "--studies-per-patient", "--size", "--seed", "--prevalence", "--modality", "--force"):
        assert option in out


def test_registered_in_the_real_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from devkit.cli import main

    with pytest.raises(SystemExit) as info:
        main(["synth", "--help"])
    assert info.value.code == 0
    assert "--prevalence" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--out", "X", "--size", "10"], "argument --size: must be between 64 and 2048, got 10"),
        (["--out", "X", "--size", "big"], "argument --size: must be an integer, got 'big'"),
        (["--out", "X", "--prevalence", "Pneumothorax=0.3"], "unknown finding 'Pneumothorax'"),
        (["--out", "X", "--prevalence", "1.2"], "'1.2': probability must be between 0 and 1"),
        (["--out", "X", "--modality", "CT"], "argument --modality: invalid choice: 'CT'"),
        (["--out", "X", "--studies-per-patient", "3-1"], "argument --studies-per-patient: range '3-1' is empty"),
        (["--patients", "3"], "the following arguments are required: --out"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_cli(["synth", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m devkit synth: error: ")
    assert expected in err


def test_cli_non_empty_out_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "something").write_text("x")
    assert run_cli(["synth", "--out", str(tmp_path), "--patients", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"synth: error: --out {tmp_path}: directory is not empty (use --force to replace it)\n"


def test_cli_generates_with_per_finding_prevalence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["synth", "--out", str(out), "--patients", "3", "--studies-per-patient", "1", "--size", "64",
            "--prevalence", "0", "--prevalence", "device=1", "--no-progress", "--workers", "1"]
    assert run_cli(argv) == 0
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["parameters"]["prevalence"] == {"Opacity": 0.0, "Device": 1.0, "Effusion": 0.0}
    assert {name: summary["labels"][name]["present"] for name in FINDINGS} == {"Opacity": 0, "Device": 3, "Effusion": 0}
    assert "Device" in capsys.readouterr().out
