"""The GT Lambda adapters with events shaped as in ARCHITECTURE.md; S3 is moto's."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "da-dev-labeling-annotations"
JOB = "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/chest-1"
PAYLOAD_KEY = "jobs/chest-1/annotations/consolidation-request/iteration-1/2026-01-31_12:00:00.json"


def _load(function: str):
    # Both adapters are called handler.py, as Lambda expects; load each under its own module name.
    spec = importlib.util.spec_from_file_location(f"{function}_handler", ROOT / "lambda_src" / function / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prelabel = _load("prelabel")
postlabel = _load("postlabel")


def _content(present: bool) -> str:
    answer = {"labels": [{"name": "Opacity", "present": present}], "rois": [], "image": {"rows": 4, "columns": 4}}
    return json.dumps({"annotation": json.dumps(answer)})


# ------------------------------------------------------------------------------------ prelabel
def test_prelabel_returns_the_manifest_line_as_task_input():
    event = {"version": "2018-10-16", "labelingJobArn": JOB,
             "dataObject": {"source": "9f1c-orthanc-id", "labels": ["Opacity", "Device"], "schema": "chest-xray"}}
    response = prelabel.lambda_handler(event, None)
    assert response == {"taskInput": {"source": "9f1c-orthanc-id", "labels": ["Opacity", "Device"],
                                      "schema": "chest-xray"},
                        "isHumanAnnotationRequired": True}
    assert response["isHumanAnnotationRequired"] is True


def test_prelabel_logs_and_raises_on_a_bad_event(caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="dataObject"):
        prelabel.lambda_handler({"version": "2018-10-16", "labelingJobArn": JOB, "dataObject": {"x": 1}}, None)
    assert "rejected pre-annotation event" in caplog.text


# ----------------------------------------------------------------------------------- postlabel
@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    postlabel._s3_client.cache_clear()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    postlabel._s3_client.cache_clear()


def _event(**overrides):
    event = {"version": "2018-10-16", "labelingJobArn": JOB, "labelCategories": None,
             "labelAttributeName": "chest", "roleArn": "arn:aws:iam::123456789012:role/gt-role",
             "payload": {"s3Uri": f"s3://{BUCKET}/{PAYLOAD_KEY}"},
             "outputConfig": f"s3://{BUCKET}/jobs/chest-1/annotations"}
    event.update(overrides)
    return event


def test_postlabel_passes_every_answer_through_and_skips_malformed_objects(s3, caplog):
    s3.put_object(Bucket=BUCKET, Key="answers/w3.json", Body=_content(False).encode())
    payload = [
        {"datasetObjectId": "0", "dataObject": {"source": "a"}, "annotations": [
            {"workerId": "w1", "annotationData": {"content": _content(True)}},
            {"workerId": "w2", "annotationData": {"content": _content(True)}},
            # GT spells the S3 reference both ways; this one is lower-case.
            {"workerId": "w3", "annotationData": {"s3uri": f"s3://{BUCKET}/answers/w3.json"}},
        ]},
        {"dataObject": {"source": "no-id"}, "annotations": []},  # malformed: no datasetObjectId
        {"datasetObjectId": "2", "dataObject": {"source": "c"}, "annotations": [
            {"workerId": "w1", "annotationData": {"content": "{broken"}},
            {"workerId": "w2", "annotationData": {"s3Uri": f"s3://{BUCKET}/answers/missing.json"}},
            {"workerId": "w4", "annotationData": {"content": _content(False)}},
        ]},
        {"datasetObjectId": "3", "annotations": [{"workerId": "w1", "annotationData": {"content": "nope"}}]},
    ]
    s3.put_object(Bucket=BUCKET, Key=PAYLOAD_KEY, Body=json.dumps(payload).encode())

    with caplog.at_level(logging.ERROR):
        response = postlabel.lambda_handler(_event(), None)

    assert [r["datasetObjectId"] for r in response] == ["0", "2"]
    first = response[0]["consolidatedAnnotation"]["content"]["chest"]
    assert first["annotators"] == 3
    assert [a["workerId"] for a in first["annotations"]] == ["w1", "w2", "w3"]
    w3 = json.loads(first["annotations"][2]["content"]["annotation"])
    assert w3["labels"] == [{"name": "Opacity", "present": False}]
    second = response[1]["consolidatedAnnotation"]["content"]["chest"]
    assert second["annotators"] == 1 and second["annotations"][0]["workerId"] == "w4"
    # Every skip is logged with its reason.
    assert "payload[1].datasetObjectId" in caplog.text
    assert "not valid JSON" in caplog.text and "missing.json" in caplog.text
    assert "skipped data object 3" in caplog.text
    json.dumps(response)  # the answer GT receives is plain JSON


def test_postlabel_rejects_an_event_without_payload(s3, caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="payload"):
        postlabel.lambda_handler(_event(payload={}), None)
    assert "rejected post-annotation event" in caplog.text


def test_postlabel_rejects_a_payload_that_is_not_a_list(s3):
    s3.put_object(Bucket=BUCKET, Key=PAYLOAD_KEY, Body=b'{"datasetObjectId": "0"}')
    with pytest.raises(ValueError, match="JSON array"):
        postlabel.lambda_handler(_event(), None)


def test_postlabel_uses_its_own_role_not_the_event_role(s3, monkeypatch):
    s3.put_object(Bucket=BUCKET, Key=PAYLOAD_KEY, Body=b"[]")
    calls = []
    real_client = boto3.client

    def spy(service, *args, **kwargs):
        calls.append(service)
        return real_client(service, *args, **kwargs)

    monkeypatch.setattr(postlabel.boto3, "client", spy)
    assert postlabel.lambda_handler(_event(), None) == []
    assert calls == ["s3"]  # no sts:AssumeRole of event["roleArn"]
