"""A tiny end-to-end training run (CLI → reader → images → DenseNet121 → report) on a trivially
separable set, then everything that uses its model: evaluate, predict, the SageMaker handler,
the active-learning order, and the SageMaker training entry point."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from labeling.manifest.format import read_manifest
from labeling.gt.output_manifest import output_line, write_output_manifest
from training import inference
from training.cli import main

SC = "1.2.840.10008.5.1.4.1.1.7"
NAMES = ["Square", "Bar"]
SIZE = 32


def separable_dicom(patient: str, square: bool, bar: bool, rng: np.random.Generator) -> bytes:
    """Noise, plus a bright square top-left ("Square") and/or a bright bar at the bottom ("Bar")."""
    px = rng.normal(1000, 60, (SIZE, SIZE))
    if square:
        px[3:11, 3:11] += 900
    if bar:
        px[23:27, 4:28] += 900
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SC
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SC, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = patient, "OT"
    ds.Rows = ds.Columns = SIZE
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.WindowCenter, ds.WindowWidth = "1400", "1600"
    ds.PixelData = np.clip(px, 0, 4095).astype("<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("separable")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    lines, truth = [], {}
    for p in range(24):
        for k in range(2):
            iid = f"img-{p:02d}-{k}"
            square, bar = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
            (images / f"{iid}.dcm").write_bytes(separable_dicom(f"PAT{p:02d}", square, bar, rng))
            truth[iid] = (square, bar)
            content = {"labels": [{"name": "Square", "present": square, "confidence": 0.9},
                                  {"name": "Bar", "present": bar, "confidence": 0.9}],
                       "rois": [], "image": {"rows": SIZE, "columns": SIZE, "frame": 0}}
            base = {"source": iid, "labels": NAMES, "task_type": "classification", "schema": "toy"}
            lines.append(output_line(base, "toy", content, "toy-job"))
    manifest = root / "output.manifest"
    write_output_manifest(manifest, lines)
    return {"root": root, "images": images, "manifest": manifest, "truth": truth}


@pytest.fixture(scope="module")
def trained(data) -> dict:
    out = data["root"] / "model"
    started = time.perf_counter()
    rc = main(["train", "--manifest", str(data["manifest"]), "--out", str(out), "--images", str(data["images"]),
               "--cache-dir", str(data["root"] / "cache"), "--image-size", str(SIZE), "--epochs", "5",
               "--patience", "5", "--batch-size", "8", "--seed", "1"])
    assert rc == 0
    return {"out": out, "seconds": time.perf_counter() - started,
            "metrics": json.loads((out / "metrics.json").read_text())}


def test_tiny_training_learns_the_separable_set(trained):
    metrics = trained["metrics"]
    assert metrics["macro_auroc"] >= 0.9, metrics["auroc"]
    assert set(metrics["auroc"]) == set(NAMES) and all(v >= 0.85 for v in metrics["auroc"].values())
    assert metrics["n_train"] + metrics["n_val"] == 48 and metrics["n_val"] >= 6
    assert metrics["n_train_patients"] + metrics["n_val_patients"] == 24


def test_training_writes_model_report_and_split(trained, data):
    out = trained["out"]
    for name in ("model.pt", "model.json", "split.json", "metrics.json", "report.html", "roc.png",
                 "training_curves.png", "calibration.png"):
        assert (out / name).is_file(), name
    info = json.loads((out / "model.json").read_text())
    assert info["labels"] == NAMES and info["image_size"] == SIZE
    assert info["architecture"] == "monai.networks.nets.DenseNet121"
    split = json.loads((out / "split.json").read_text())
    patient = lambda iid: iid.split("-")[1]  # noqa: E731
    assert not {patient(i) for i in split["train"]} & {patient(i) for i in split["validation"]}
    metrics = trained["metrics"]
    for label in NAMES:
        per = metrics["per_label"][label]
        c = per["confusion"]
        assert c["tp"] + c["fp"] + c["tn"] + c["fn"] == metrics["n_val"]
        assert per["calibration"]["brier"] is not None and 0 <= per["calibration"]["ece"] <= 1
    assert metrics["history"] and metrics["best_epoch"] >= 1
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "Square" in page


def test_train_refuses_a_non_empty_out_and_names_bad_input(data, tmp_path, capsys):
    (tmp_path / "x").write_text("keep me")
    rc = main(["train", "--manifest", str(data["manifest"]), "--out", str(tmp_path), "--images", str(data["images"])])
    assert rc == 2 and "not empty" in capsys.readouterr().err
    assert (tmp_path / "x").read_text() == "keep me"
    missing = tmp_path / "nope"
    rc = main(["train", "--manifest", str(data["manifest"]), "--out", str(missing), "--images", str(tmp_path / "none")])
    assert rc == 2 and "not a directory" in capsys.readouterr().err and not missing.exists()


def test_evaluate_reruns_the_report_on_the_validation_split(trained, data, tmp_path):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(trained["out"]), "--manifest", str(data["manifest"]), "--out", str(out),
               "--images", str(data["images"]), "--cache-dir", str(data["root"] / "cache"), "--only-validation"])
    assert rc == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["n_val"] == trained["metrics"]["n_val"]
    assert again["macro_auroc"] == pytest.approx(trained["metrics"]["macro_auroc"], abs=1e-6)


def test_handler_round_trip_with_dicom_bytes(trained, data, tmp_path):
    # The reference is `predict` (files on disk → the same model): the handler, fed the DICOM bytes,
    # must give the same probabilities. Presence at a fixed threshold after 5 epochs depends on
    # calibration (not what the handler is responsible for), so truth is checked as a ranking.
    preds = tmp_path / "predictions.jsonl"
    assert main(["predict", "--model", str(trained["out"]), "--manifest", str(data["manifest"]), "--out", str(preds),
                 "--images", str(data["images"])]) == 0
    reference = {r["source"]: {e["name"]: e["probability"] for e in r["labels"]}
                 for r in inference.read_predictions(preds)}
    model = inference.model_fn(str(trained["out"]))
    by_label: dict[str, dict[bool, list[float]]] = {n: {True: [], False: []} for n in NAMES}
    for iid, (square, bar) in list(data["truth"].items())[:12]:
        body = (data["images"] / f"{iid}.dcm").read_bytes()
        answer = json.loads(inference.output_fn(inference.predict_fn(inference.input_fn(body, "application/dicom"),
                                                                     model), "application/json"))
        assert len(answer) == 1
        labels = {e["name"]: e for e in answer[0]["labels"]}
        assert set(labels) == set(NAMES)
        for e in labels.values():
            assert 0 <= e["probability"] <= 1
            assert e["probability"] == pytest.approx(reference[iid][e["name"]], abs=1e-5)
            assert e["confidence"] == pytest.approx(e["probability"] if e["present"] else 1 - e["probability"], abs=1e-5)
        by_label["Square"][square].append(labels["Square"]["probability"])
        by_label["Bar"][bar].append(labels["Bar"]["probability"])
        assert answer[0]["model"]["name"] and answer[0]["image"] == {"rows": SIZE, "columns": SIZE, "frame": 0}
    for name, groups in by_label.items():  # the separable set: positives score above negatives on average
        assert groups[True] and groups[False], name
        assert np.mean(groups[True]) > np.mean(groups[False]), (name, groups)
    with pytest.raises(ValueError, match="content type"):
        inference.input_fn(b"x", "image/png")
    with pytest.raises(ValueError, match="not a readable DICOM"):
        inference.input_fn(b"garbage", "application/dicom")
    with pytest.raises(ValueError, match="orthanc_id"):
        inference.input_fn(json.dumps({"id": 1}), "application/json")


def test_predict_then_order_most_uncertain_first(trained, data, tmp_path):
    preds = tmp_path / "predictions.jsonl"
    rc = main(["predict", "--model", str(trained["out"]), "--manifest", str(data["manifest"]), "--out", str(preds),
               "--images", str(data["images"])])
    assert rc == 0
    rows = [json.loads(t) for t in preds.read_text().splitlines()]
    assert len(rows) == 48 and {r["source"] for r in rows} == set(data["truth"])
    ordered = tmp_path / "next.manifest"
    assert main(["order", "--manifest", str(data["manifest"]), "--predictions", str(preds), "--out", str(ordered),
                 "--limit", "10"]) == 0
    lines = read_manifest(ordered)
    assert len(lines) == 10
    assert all("toy" not in ln.extra and "toy-metadata" not in ln.extra for ln in lines)  # old job dropped
    from training.active import uncertainty

    by_id = {r["source"]: r for r in rows}
    scores = [uncertainty(by_id[ln.source]) for ln in lines]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] >= max(uncertainty(r) for r in rows) - 1e-12
    pre = lines[0].extra["prelabel"]
    assert pre["model"].startswith("dicom-annotate DenseNet121 ")
    assert [e["name"] for e in pre["labels"]] == NAMES and pre["rois"] == []


def test_sagemaker_entry_trains_into_the_sagemaker_directories(data, tmp_path):
    from training.sagemaker_entry import main as entry

    channel = tmp_path / "manifest"
    channel.mkdir()
    (channel / "output.manifest").write_bytes(data["manifest"].read_bytes())
    env = {"SM_CHANNEL_MANIFEST": str(channel), "SM_CHANNEL_IMAGES": str(data["images"]),
           "SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"),
           "SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1"}
    rc = entry(["--epochs", "1", "--image-size", str(SIZE), "--augment", "false", "--batch-size", "16"], env)
    assert rc == 0
    assert (tmp_path / "model" / "model.pt").is_file() and (tmp_path / "model" / "model.json").is_file()
    metrics = json.loads((tmp_path / "output" / "metrics.json").read_text())
    assert metrics["hyperparameters"]["augment"] is False and metrics["epochs_run"] == 1
    assert (tmp_path / "output" / "report.html").is_file()
    # a second host of a multi-host job does nothing
    env2 = dict(env, SM_HOSTS='["algo-1", "algo-2"]', SM_CURRENT_HOST="algo-2",
                SM_MODEL_DIR=str(tmp_path / "m2"))
    assert entry(["--epochs", "1"], env2) == 0 and not (tmp_path / "m2").exists()


def test_sagemaker_hyperparameters_and_channel_checks(tmp_path):
    from training.sagemaker_entry import find_manifest, normalise_hyperparameters

    assert normalise_hyperparameters(["--epochs", "3", "--augment", "false", "--confidence-weighting", "True"]) \
        == ["--epochs", "3", "--no-augment", "--confidence-weighting"]
    assert normalise_hyperparameters(["--augment=true", "--confidence-weighting", "--seed", "2"]) \
        == ["--confidence-weighting", "--seed", "2"]
    with pytest.raises(SystemExit, match="expected true or false"):
        normalise_hyperparameters(["--augment", "maybe"])
    with pytest.raises(SystemExit, match="expected one manifest file, found 0"):
        find_manifest(tmp_path)
    (tmp_path / "a.manifest").write_text("{}\n")
    (tmp_path / "notes.txt").write_text("x")
    assert find_manifest(tmp_path).name == "a.manifest"
    (tmp_path / "b.jsonl").write_text("{}\n")
    with pytest.raises(SystemExit, match="found 2"):
        find_manifest(tmp_path)


def test_train_refuses_a_set_below_the_stated_minimum(data, tmp_path, capsys):
    """5 images: some label lacks a positive or a negative in the validation split → one line, exit 2."""
    small = tmp_path / "small.manifest"
    small.write_text("".join(data["manifest"].read_text().splitlines(keepends=True)[:5]))
    out = tmp_path / "model"
    rc = main(["train", "--manifest", str(small), "--out", str(out), "--images", str(data["images"]),
               "--image-size", str(SIZE), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "too few labeled images to train" in err and "AUROC" in err, err
    assert len(err.splitlines()) == 1 and not out.exists()


def test_train_refuses_an_out_whose_parent_is_missing(data, tmp_path, capsys):
    out = tmp_path / "no" / "such" / "model"
    rc = main(["train", "--manifest", str(data["manifest"]), "--out", str(out), "--images", str(data["images"])])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == (f"train: error: --out {out}: parent directory {out.parent} does not exist; "
                               "create it, or pass --parents")
    assert not out.parent.exists()
