"""Series-level training (training/volume.py): volumes from synthetic CT series (devkit/synth_series.py) in
the manifest's order, a 3-D DenseNet121 trained and reported per series, predictions per series, and one
clear error when a manifest or model mixes levels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from devkit.synth_series import generate_series_dataset
from labeling.gt.output_manifest import output_line, write_output_manifest
from training import volume
from training.dataset import DatasetError, DirectorySource
from training.train import TrainConfig, evaluate_model, train_from_manifest

GRID = (32, 32, 32)


@pytest.fixture(scope="module")
def ct(tmp_path_factory) -> dict:
    """6 series of 8 slices (64 px) + one multi-frame copy of the first; files as <orthanc id>.dcm."""
    root = tmp_path_factory.mktemp("ct")
    generate_series_dataset(root / "data", series=6, slices=8, size=64, seed=11, prevalence=0.5, progress=False)
    truth = [json.loads(line) for line in (root / "data" / "ground_truth.jsonl").read_text().splitlines()]
    images = root / "images"
    images.mkdir()
    by_uid = {path.stem: path for path in (root / "data").rglob("*.dcm")}
    for record in truth:
        for instance, uid in zip(record["instances"], record["sop_instance_uids"]):
            shutil.copy(by_uid[uid], images / f"{instance}.dcm")
    lines = [{"source": r["source"], "labels": ["Nodule"], "task_type": "classification+roi", "schema": "ct-nodule",
              "level": r["level"], "instances": r["instances"],
              "frames": len(r["instances"]) if r["level"] == "series" else 8} for r in truth]
    return {"truth": truth, "lines": lines, "images": DirectorySource(images), "dir": images, "root": root}


def _output_manifest(ct, path: Path, lines) -> Path:
    by_source = {r["source"]: r for r in ct["truth"]}
    rows = []
    for line in lines:
        present = by_source[line["source"]]["labels"][0]["present"]
        rows.append(output_line(line, "ct-job", {"labels": [{"name": "Nodule", "present": present, "confidence": 1.0}],
                                                 "rois": []}, "ct-job"))
    return write_output_manifest(path, rows)


def test_series_and_multiframe_give_the_same_volume(ct):
    series, multi = (next(line for line in ct["lines"] if line["level"] == level) for level in ("series", "multiframe"))
    a, first = volume.read_volume(series, ct["images"])
    b, _ = volume.read_volume(multi, ct["images"])
    assert a.shape == b.shape == (8, 64, 64) and np.allclose(a, b)  # both in InstanceNumber (file) order
    assert a.min() >= -1100 and a.max() > 0  # Hounsfield units after the rescale
    x = volume.volume_input(a, volume.VolumePreprocessing(grid=GRID))
    assert x.shape == (1, *GRID) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    # the slices follow the line's order: reversed instances give the reversed volume
    c, _ = volume.read_volume({**series, "instances": series["instances"][::-1]}, ct["images"])
    assert np.allclose(c, a[::-1])


def test_series_model_trains_reports_evaluates_and_predicts(ct, tmp_path):
    from training.inference import Predictor

    series_lines = [line for line in ct["lines"] if line["level"] == "series"]
    assert {r["labels"][0]["present"] for r in ct["truth"]} == {True, False}
    manifest = _output_manifest(ct, tmp_path / "out.manifest", series_lines)
    config = TrainConfig(epochs=2, batch_size=2, patience=2, volume_size=GRID, val_fraction=0.5, seed=1)
    metrics = train_from_manifest(manifest, tmp_path / "model", images_dir=ct["dir"], config=config,
                                  cache_dir=tmp_path / "cache", progress=False, log=lambda _: None)
    info = json.loads((tmp_path / "model" / "model.json").read_text())
    assert info["spatial_dims"] == 3 and info["level"] == "series" and info["grid"] == list(GRID)
    assert info["preprocessing"]["grid"] == list(GRID) and "Nodule" in metrics["auroc"]
    assert metrics["n_train"] + metrics["n_val"] == len(series_lines)
    assert len(list((tmp_path / "cache").glob("vol-*/*.npy"))) == len(series_lines)  # cached per series

    again = evaluate_model(tmp_path / "model", manifest, tmp_path / "eval", images_dir=ct["dir"],
                           cache_dir=tmp_path / "cache", progress=False)
    assert again["n_val"] == len(series_lines)

    predictor = Predictor.load(tmp_path / "model")
    rows = volume.predict_lines(predictor, series_lines[:2], ct["images"])
    assert [r["source"] for r in rows] == [line["source"] for line in series_lines[:2]]
    assert rows[0]["level"] == "series" and rows[0]["instances"] == series_lines[0]["instances"]
    assert 0.0 <= rows[0]["labels"][0]["probability"] <= 1.0

    # one level per model: image lines are refused by a series model, with what to do
    with pytest.raises(DatasetError, match="this model is a series .3-D. model"):
        volume.check_level(info, [{"source": "x"}], "m.jsonl")
    with pytest.raises(DatasetError, match="this model is a 2-D image model"):
        volume.check_level({"spatial_dims": 2}, series_lines, "m.jsonl")


def test_mixed_levels_are_refused_naming_the_line(ct, tmp_path):
    image_line = {"source": "abc", "labels": ["Nodule"], "task_type": "classification", "schema": "ct-nodule"}
    with pytest.raises(DatasetError, match=r"m.jsonl: line 2 \(abc\) is an image but line 1 is not; a model learns "
                                           "one level"):
        volume.series_items([ct["lines"][0], image_line], "m.jsonl")
    assert volume.series_items([image_line], "m") is False and volume.series_items(ct["lines"], "m") is True


def test_volume_size_flag():
    assert volume.parse_volume_size("32,48,48") == (32, 48, 48)
    for bad in ("16,32", "a,b,c"):
        with pytest.raises(ValueError, match="--volume-size"):
            volume.parse_volume_size(bad)
    with pytest.raises(ValueError, match="three sizes"):
        volume.VolumePreprocessing(grid=(16, 32, 32))


def test_series_model_refuses_single_images():
    from training.inference import InferenceInput, Predictor

    predictor = Predictor.__new__(Predictor)
    predictor.info = {"spatial_dims": 3}
    with pytest.raises(ValueError, match="series .3-D. model and the request holds single images"):
        predictor.predict([InferenceInput("x", None)])
