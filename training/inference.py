"""Inference: the SageMaker handler functions and ``python -m training predict``.

SageMaker PyTorch serving (sagemaker-pytorch-inference-toolkit) calls, per endpoint container,
``model_fn(model_dir)`` once, then per request ``input_fn(body, content_type)`` →
``predict_fn(data, model)`` → ``output_fn(prediction, accept)``:

* ``application/dicom``: the body is one DICOM Part-10 file;
* ``application/json``: ``{"orthanc_id": "<id>"}`` or ``{"orthanc_ids": [...]}`` (at most
  :data:`MAX_IDS_PER_REQUEST`); the files are fetched from ``ORTHANC_URL`` with
  ``ORTHANC_USERNAME``/``ORTHANC_PASSWORD`` or the JSON secret ``ORTHANC_SECRET_ARN``
  (``{"username", "password"}``, the Lambdas' convention) — credentials never travel in requests.

The answer (``application/json``) is a list with one prediction per image::

    {"source": "<orthanc id or 'request'>", "sop_instance_uid": ..., "study_instance_uid": ...,
     "series_instance_uid": ..., "model": {"name": ..., "version": ...},
     "labels": [{"name": "Opacity", "present": true, "confidence": 0.91, "probability": 0.91}, ...],
     "image": {"rows": ..., "columns": ..., "frame": 0}}

``labels`` follows the label shape of docs/architecture.md: ``present`` is probability >= the label's
threshold (``model.json``), ``confidence`` the probability of the stated answer (p when present,
1 - p when absent), so a prediction reads like one more annotator's answer; ``probability`` is
the model's P(present). The same dicts are the lines of ``predict``'s JSON Lines output and the
input of ``writeback`` and ``order``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pydicom
import torch

if __package__ in (None, ""):  # loaded as the top-level module "inference" by SageMaker serving
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from labeling.cli import bad_input
from training.imaging import ImageError, Preprocessing, preprocess, read_dicom

MAX_IDS_PER_REQUEST = 64
JSON = "application/json"
DICOM = "application/dicom"


@dataclass(frozen=True)
class InferenceInput:
    """One image to predict: where it came from and its parsed DICOM dataset."""

    source: str
    dataset: pydicom.Dataset


class Predictor:
    """A loaded model with its ``model.json``: DICOM datasets in, label-shape predictions out."""

    def __init__(self, model: torch.nn.Module, info: Mapping[str, Any]) -> None:
        self.model = model
        self.info = dict(info)
        self.labels: list[str] = list(info["labels"])
        from training.volume import VolumePreprocessing

        series = int(info.get("spatial_dims", 2)) == 3  # a series model (training/volume.py)
        self.prep: Any = (VolumePreprocessing if series else Preprocessing).from_dict(info["preprocessing"])
        self.thresholds = {n: float(info.get("thresholds", {}).get(n, 0.5)) for n in self.labels}
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, model_dir: str | Path) -> "Predictor":
        from training.train import load_model

        model, info = load_model(model_dir)
        return cls(model, info)

    @property
    def model_ref(self) -> dict[str, str]:
        return {"name": str(self.info["name"]), "version": str(self.info["version"])}

    def probabilities(self, arrays: np.ndarray, batch_size: int = 32) -> np.ndarray:
        from training.train import predict_probs

        return predict_probs(self.model, arrays, self.device, batch_size=batch_size)

    def predict(self, inputs: Sequence[InferenceInput]) -> list[dict[str, Any]]:
        if not inputs:
            return []
        if int(self.info.get("spatial_dims", 2)) == 3:  # one DICOM image is not a series' volume
            raise ValueError("this is a series (3-D) model and the request holds single images; predict series "
                             "tasks with `python -m training predict --manifest <series manifest>`")
        arrays = np.stack([preprocess(i.dataset, self.prep, name=i.source) for i in inputs])
        probs = self.probabilities(arrays)
        return [self.prediction(i, p) for i, p in zip(inputs, probs)]

    def prediction(self, item: InferenceInput, prob: np.ndarray) -> dict[str, Any]:
        ds = item.dataset
        labels = []
        for name, p in zip(self.labels, prob.tolist()):
            present = p >= self.thresholds[name]
            labels.append({"name": name, "present": bool(present),
                           "confidence": round(p if present else 1.0 - p, 6), "probability": round(p, 6)})
        return {
            "source": item.source,
            "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
            "study_instance_uid": str(ds.get("StudyInstanceUID", "")),
            "series_instance_uid": str(ds.get("SeriesInstanceUID", "")),
            "model": self.model_ref,
            "labels": labels,
            "image": {"rows": int(ds.get("Rows") or 0), "columns": int(ds.get("Columns") or 0), "frame": 0},
        }


# --- SageMaker handler -----------------------------------------------------------------------

_orthanc_client: Any = None


def orthanc_from_env(environ: Mapping[str, str] = os.environ) -> Any:
    """An OrthancClient from ``ORTHANC_URL`` + ``ORTHANC_SECRET_ARN`` or user/password (cached;
    :func:`labeling.orthanc.connection.orthanc_client_from_env`)."""
    global _orthanc_client
    if _orthanc_client is None:
        from labeling.orthanc.connection import orthanc_client_from_env

        _orthanc_client = orthanc_client_from_env(environ)
    return _orthanc_client


def model_fn(model_dir: str) -> Predictor:
    """SageMaker: load ``model.pt`` + ``model.json`` from the model directory."""
    return Predictor.load(model_dir)


def input_fn(body: bytes | str, content_type: str = DICOM) -> list[InferenceInput]:
    """SageMaker: DICOM bytes, or JSON naming Orthanc instance ids (module docstring)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == DICOM:
        data = body.encode("latin-1") if isinstance(body, str) else bytes(body)
        return [InferenceInput("request", read_dicom(data, name="request body"))]
    if kind == JSON:
        try:
            request = json.loads(body)
        except ValueError as exc:
            raise ValueError(f"request body: not JSON ({exc})") from None
        if not isinstance(request, dict):
            raise ValueError('request body: expected {"orthanc_id": ...} or {"orthanc_ids": [...]}')
        ids = request.get("orthanc_ids", [request["orthanc_id"]] if "orthanc_id" in request else None)
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ValueError('request body: expected {"orthanc_id": "<id>"} or {"orthanc_ids": ["<id>", ...]}')
        if len(ids) > MAX_IDS_PER_REQUEST:
            raise ValueError(f"request body: at most {MAX_IDS_PER_REQUEST} ids per request, got {len(ids)}")
        from labeling.contracts.ids import validate_instance_id

        client = orthanc_from_env()
        return [InferenceInput(i, read_dicom(client.instance_file(validate_instance_id(i)),
                                             name=f"Orthanc instance {i}")) for i in ids]
    raise ValueError(f"content type {content_type!r}: send {DICOM} or {JSON}")


def predict_fn(data: Sequence[InferenceInput], model: Predictor) -> list[dict[str, Any]]:
    """SageMaker: predictions in the label shape (module docstring)."""
    return model.predict(data)


def output_fn(prediction: Any, accept: str = JSON) -> str:
    """SageMaker: the predictions as JSON."""
    kind = (accept or JSON).split(";")[0].strip().lower()
    if kind not in (JSON, "*/*"):
        raise ValueError(f"accept {accept!r}: only {JSON} is produced")
    return json.dumps(prediction)


# --- predict CLI -----------------------------------------------------------------------------


def predict_ids(predictor: Predictor, ids: Sequence[str], source: Any, *, batch: int = 32,
                workers: int = 4, progress: bool = True) -> list[dict[str, Any]]:
    """Fetch, decode and predict ``ids`` in batches; one prediction per id, in order."""
    def load(iid: str) -> InferenceInput:
        return InferenceInput(iid, read_dicom(source.fetch(iid), name=source.describe(iid)))

    out: list[dict[str, Any]] = []
    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=True)
        bar.start()
        task = bar.add_task("predicting", total=len(ids))
    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for b in range(0, len(ids), batch):
                out.extend(predictor.predict(list(pool.map(load, ids[b:b + batch]))))
                if bar is not None:
                    bar.advance(task, len(ids[b:b + batch]))
    finally:
        if bar is not None:
            bar.stop()
    return out


def write_jsonl(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write JSON Lines atomically (temporary file, then rename)."""
    from labeling.outdir import atomic_file

    with atomic_file(path, "w") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def read_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Read ``predict``'s JSON Lines; ValueError names file:line when a line is not a prediction."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
            if not (isinstance(row, dict) and isinstance(row.get("source"), str)
                    and isinstance(row.get("labels"), list) and isinstance(row.get("model"), dict)):
                raise ValueError(f"{path}:{n}: not a prediction (needs 'source', 'labels' and 'model')")
            rows.append(row)
    return rows


def register(subparsers: argparse._SubParsersAction) -> None:
    from training.train_cli import add_image_source_arguments

    p = subparsers.add_parser(
        "predict",
        description="Predict every image of a manifest (or the given Orthanc instance ids) and write "
                    "one JSON prediction per line (label shape: name, present, confidence, probability).")
    p.add_argument("--model", type=Path, required=True, help="directory with model.pt + model.json")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--manifest", type=Path, help="manifest whose images to predict")
    which.add_argument("--instance", action="append", metavar="ID", help="Orthanc instance id (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="predictions file (JSON Lines)")
    add_image_source_arguments(p, cache=False)
    p.set_defaults(func=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from training.dataset import DatasetError, DirectorySource, OrthancSource
    from training.train_cli import _errors, orthanc_client_from_args

    from labeling.manifest.format import read_manifest
    from training import volume

    try:
        predictor = Predictor.load(args.model)
        lines = [line.to_dict() for line in read_manifest(args.manifest)] if args.manifest else \
            [{"source": i} for i in args.instance]
        series = volume.check_level(predictor.info, lines, str(args.manifest or "--instance"))
        client = orthanc_client_from_args(args)
        source = DirectorySource(args.images) if args.images else OrthancSource(client)
        rows = volume.predict_lines(predictor, lines, source) if series else \
            predict_ids(predictor, [line["source"] for line in lines], source)
        write_jsonl(args.out, rows)
    except (*_errors(), ImageError, DatasetError) as exc:
        raise bad_input(exc) from exc
    positives = {n: sum(1 for r in rows for lab in r["labels"] if lab["name"] == n and lab["present"])
                 for n in predictor.labels}
    print(f"{len(rows)} predictions → {args.out}  (predicted present: {positives})")
    return 0
