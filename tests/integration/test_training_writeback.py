"""Predictions from Orthanc and back into Orthanc, against the session's real Orthanc 1.10 + PostgreSQL:
the SageMaker handler reading an instance by id, ``predict``/``writeback`` on the CLI, the SR
(model as device observer) and the metadata variant visible through Orthanc's REST API."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
import torch
from pydicom.uid import generate_uid

from labeling.orthanc.client import OrthancClient
from labeling.dicom.sr import read_annotation_sr
from tests.integration.dicom_files import dicom_bytes
from training import inference
from training.cli import main
from training.imaging import Preprocessing
from training.train import build_model, save_model
from training.writeback import PREDICTION_METADATA, write_back

pytestmark = pytest.mark.integration
NAMES = ["Opacity", "Device", "Effusion"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A real model directory (untrained weights: write-back does not care what the model knows)."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model")
    save_model(out, build_model(len(NAMES)).state_dict(), NAMES, Preprocessing(size=32))
    return out


@pytest.fixture
def uploaded(client: OrthancClient) -> tuple[str, str]:
    study = generate_uid()
    result = client.upload(dicom_bytes(patient_id=f"IT-TRAIN-{generate_uid()[-8:]}", study_uid=study,
                                       series_uid=generate_uid(), size=48))
    return result.instance_id, study


@pytest.fixture
def env(monkeypatch, connection):
    monkeypatch.setenv("ORTHANC_URL", connection.url)
    monkeypatch.setenv("ORTHANC_USERNAME", connection.username)
    monkeypatch.setenv("ORTHANC_PASSWORD", connection.password)
    monkeypatch.delenv("ORTHANC_SECRET_ARN", raising=False)
    monkeypatch.setattr(inference, "_orthanc_client", None)


def test_handler_reads_orthanc_and_sr_write_back_is_visible(client, uploaded, model_dir, env):
    instance_id, study = uploaded
    model = inference.model_fn(str(model_dir))
    data = inference.input_fn(json.dumps({"orthanc_id": instance_id}), "application/json")
    [prediction] = json.loads(inference.output_fn(inference.predict_fn(data, model), "application/json"))
    assert prediction["source"] == instance_id and prediction["study_instance_uid"] == study
    assert prediction["image"] == {"rows": 48, "columns": 48, "frame": 0}

    [done] = write_back(client, [prediction], mode="sr")
    sr_id = done["stored"]
    tags = client.instance_tags(sr_id)
    assert tags["Modality"] == "SR" and tags["StudyInstanceUID"] == study  # beside the image, same study
    sr = pydicom.dcmread(io.BytesIO(client.instance_file(sr_id)))
    answer = read_annotation_sr(sr)
    assert {e["name"]: e["present"] for e in answer["labels"]} == \
        {e["name"]: e["present"] for e in prediction["labels"]}
    for got, want in zip(sorted(answer["labels"], key=lambda e: e["name"]),
                         sorted(prediction["labels"], key=lambda e: e["name"])):
        assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-3)
    observer = {str(item.ConceptNameCodeSequence[0].CodeMeaning): getattr(item, "TextValue", None)
                for item in sr.ContentSequence if item.ValueType in ("TEXT", "UIDREF")}
    assert observer.get("Device Observer Name") == "dicom-annotate DenseNet121"
    assert prediction["model"]["version"] in (observer.get("Device Observer Model Name") or "")
    # the same predictions again: the same SR (deterministic UIDs), answered AlreadyStored
    assert write_back(client, [prediction], mode="sr")[0]["stored"] == sr_id
    series = client.find("Series", {"StudyInstanceUID": study, "Modality": "SR"})
    assert len(series) == 1


def test_metadata_write_back(client, uploaded, model_dir, env):
    instance_id, _ = uploaded
    model = inference.model_fn(str(model_dir))
    [prediction] = model.predict(inference.input_fn(json.dumps({"orthanc_ids": [instance_id]}), "application/json"))
    write_back(client, [prediction], mode="metadata")
    stored = json.loads(client.get_metadata("instances", instance_id, PREDICTION_METADATA))
    assert stored == prediction
    write_back(client, [prediction], mode="metadata")  # replacing it works under CheckRevisions too


def test_predict_and_writeback_commands(client, uploaded, model_dir, env, tmp_path, capsys):
    instance_id, study = uploaded
    preds = tmp_path / "predictions.jsonl"
    assert main(["predict", "--model", str(model_dir), "--instance", instance_id, "--out", str(preds)]) == 0
    [row] = [json.loads(t) for t in preds.read_text().splitlines()]
    assert row["source"] == instance_id and len(row["labels"]) == 3
    assert main(["writeback", "--predictions", str(preds)]) == 0
    assert "1 SRs written" in capsys.readouterr().out
    assert len(client.find("Series", {"StudyInstanceUID": study, "Modality": "SR"})) == 1
    assert main(["predict", "--model", str(model_dir), "--instance", "0" * 8 + "-" + "-".join(["0" * 8] * 4),
                 "--out", str(tmp_path / "none.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err and not (tmp_path / "none.jsonl").exists()
