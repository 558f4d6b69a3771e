"""Predictions back into Orthanc (``python -m training writeback``).

Default: one **DICOM SR** per predicted image (TID 1500 Measurement Report built by
:func:`labeling.dicom.sr.build_annotation_sr`), with the model as a *device* observer (TID 1004: name
and version from ``model.json``; the version is a hash of the weights), one qualitative
evaluation per label (present/absent) with the model's confidence as "Certainty of Finding". The
SR joins the image's study in its own series, so any DICOM viewer (Orthanc Explorer, OHIF, 3D
Slicer) lists it next to the image. Its Series and SOP Instance UIDs are derived from the model
version and the source UIDs, so writing the same predictions again is answered ``AlreadyStored``
instead of piling up duplicates; a new model version writes new SRs.

``--mode metadata`` instead stores the prediction JSON as the instance's metadata
:data:`PREDICTION_METADATA` (a user metadata index: Orthanc 1.10 accepts indices 1024–65535 without
a ``UserMetadata`` declaration; declaring a name for it in the configuration only makes it
readable by name). It is lighter but visible only through the REST API.

Series-level predictions (a series model, :mod:`training.volume`: ``level`` ``series`` or
``multiframe``, with the task's ordered ``instances``) become SRs of the series
(:func:`labeling.dicom.sr.build_series_sr`): series-level findings, the first slice as evidence (its
header is read, not every slice's); ``--mode metadata`` stores them on the Orthanc series (or the
multi-frame instance).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import pydicom
from pydicom.uid import generate_uid

from labeling.cli import bad_input

PREDICTION_METADATA = "1300"
SR_SERIES_NUMBER = 9902
_UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's root, as labeling.dicom.sr uses


def prediction_answer(prediction: Mapping[str, Any]) -> dict[str, Any]:
    """The label-shape answer of a prediction (labels with confidence; no ROIs)."""
    labels = [{"name": e["name"], "present": bool(e["present"]), "confidence": float(e["confidence"])}
              for e in prediction["labels"]]
    answer: dict[str, Any] = {"labels": labels, "rois": []}
    if prediction.get("image", {}).get("rows"):
        answer["image"] = dict(prediction["image"])
    return answer


def prediction_sr(source: pydicom.Dataset, prediction: Mapping[str, Any]) -> pydicom.Dataset:
    """The SR of one prediction on its source instance, or of a series prediction with ``source`` its
    first slice's header (module docstring)."""
    from labeling.dicom.sr import Observer, build_annotation_sr, build_series_sr

    model = prediction["model"]
    version = str(model.get("version") or "")
    observer = Observer.device(str(model["name"]), version or None)
    series_uid = generate_uid(prefix=_UID_PREFIX, entropy_srcs=["prediction-series", version,
                                                                 str(source.StudyInstanceUID)])
    options = dict(series_number=SR_SERIES_NUMBER, description=f"{model['name']} predictions",
                   series_instance_uid=series_uid)
    if _is_series(prediction):
        return build_series_sr({prediction["instances"][0]: source}, prediction_answer(prediction), [observer],
                               sop_instance_uid=generate_uid(prefix=_UID_PREFIX, entropy_srcs=[
                                   "prediction", version, "series", str(prediction["source"])]), **options)
    sop_uid = generate_uid(prefix=_UID_PREFIX, entropy_srcs=["prediction", version, str(source.SOPInstanceUID)])
    return build_annotation_sr(source, prediction_answer(prediction), [observer], sop_instance_uid=sop_uid,
                               **options)


def _is_series(prediction: Mapping[str, Any]) -> bool:
    return prediction.get("level") in ("series", "multiframe")


def write_back(client: Any, predictions: Sequence[Mapping[str, Any]], *, mode: str = "sr") -> list[dict[str, str]]:
    """Write every prediction into Orthanc; returns ``[{"source", "stored"}]`` (SR id or metadata name)."""
    from labeling.dicom.sr import store_sr

    if mode not in ("sr", "metadata"):
        raise ValueError(f"mode: must be 'sr' or 'metadata', got {mode!r}")
    done = []
    for prediction in predictions:
        source_id = prediction["source"]
        if mode == "metadata":
            level = "series" if prediction.get("level") == "series" else "instances"
            client.set_metadata(level, source_id, PREDICTION_METADATA, json.dumps(prediction, separators=(",", ":")))
            done.append({"source": source_id, "stored": f"metadata {PREDICTION_METADATA}"})
            continue
        header_of = prediction["instances"][0] if _is_series(prediction) else source_id
        source = pydicom.dcmread(io.BytesIO(client.instance_file(header_of)), stop_before_pixels=True)
        done.append({"source": source_id, "stored": store_sr(client, prediction_sr(source, prediction))})
    return done


def register(subparsers: argparse._SubParsersAction) -> None:
    from labeling.orthanc.connection import add_connection_arguments

    p = subparsers.add_parser(
        "writeback",
        description="Write the predictions of `python -m training predict` into Orthanc: one DICOM SR "
                    "(TID 1500, the model as device observer) per image, or instance metadata.")
    p.add_argument("--predictions", type=Path, required=True, help="predictions file (JSON Lines)")
    p.add_argument("--mode", choices=("sr", "metadata"), default="sr",
                   help=f"sr (default) or metadata (instance metadata {PREDICTION_METADATA})")
    add_connection_arguments(p)
    p.set_defaults(func=run_writeback)


def run_writeback(args: argparse.Namespace) -> int:
    from labeling.orthanc.connection import ConnectionError_, connection_from_args
    from labeling.orthanc.client import OrthancClient, OrthancError
    from labeling.dicom.sr import SRError
    from training.inference import read_predictions

    try:
        predictions = read_predictions(args.predictions)
        with OrthancClient.from_connection(connection_from_args(args)) as client:
            done = write_back(client, predictions, mode=args.mode)
    except (ConnectionError_, OrthancError, SRError, ValueError, OSError) as exc:
        raise bad_input(exc) from exc
    what = "SRs" if args.mode == "sr" else f"metadata {PREDICTION_METADATA} values"
    print(f"{len(done)} {what} written to Orthanc")
    return 0
