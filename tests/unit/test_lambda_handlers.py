"""The GT Lambda adapters with events shaped as in docs/architecture.md; S3 is moto's."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
from pathlib import Path

import io

import boto3
import pydicom
import pytest
from moto import mock_aws

from labeling.contracts.manifest_line import ManifestLine
from labeling.contracts.schema import load_schema
from labeling.gt import prelabel as gt_prelabel
from labeling.orthanc.client import OrthancError

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


# ------------------------------------------------------------------------------------ prelabel
INSTANCE = "0a9b4f3c-1d2e3f40-5a6b7c8d-9e0f1a2b-3c4d5e6f"
SECRET_NAME = "da-dev/orthanc"


def _dicom(name: str = "CT_small.dcm") -> bytes:
    from pydicom.data import get_testdata_file

    with open(get_testdata_file(name), "rb") as handle:
        return handle.read()


class FakeOrthanc:
    """Stands in for labeling.orthanc.client.OrthancClient; records every construction and fetch."""

    files: dict = {}
    fail_with = None
    made: list = []
    fetched: list = []

    def __init__(self, url, username, password, **kwargs):
        FakeOrthanc.made.append((url, username, password))

    def instance_file(self, instance_id):
        FakeOrthanc.fetched.append(instance_id)
        if FakeOrthanc.fail_with is not None:
            raise FakeOrthanc.fail_with
        if instance_id not in FakeOrthanc.files:
            raise OrthancError(404, "Unknown resource", f"http://orthanc/instances/{instance_id}/file")
        return FakeOrthanc.files[instance_id]


@pytest.fixture
def aws(monkeypatch):
    """moto S3 (the staging bucket) + Secrets Manager (the Orthanc secret), a fake Orthanc, env set."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "STAGING_KMS_KEY_ID", "DEIDENTIFY"):
        monkeypatch.delenv(var, raising=False)
    FakeOrthanc.files, FakeOrthanc.fail_with, FakeOrthanc.made, FakeOrthanc.fetched = {INSTANCE: _dicom()}, None, [], []
    monkeypatch.setattr(gt_prelabel, "OrthancClient", FakeOrthanc)
    prelabel.reset()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        secrets = boto3.client("secretsmanager", region_name="us-east-1")
        arn = secrets.create_secret(Name=SECRET_NAME,
                                    SecretString=json.dumps({"username": "gt", "password": "s3cret"}))["ARN"]
        monkeypatch.setenv("ORTHANC_URL", "http://orthanc.internal:8042")
        monkeypatch.setenv("ORTHANC_SECRET_ARN", arn)
        monkeypatch.setenv("STAGING_BUCKET", BUCKET)
        monkeypatch.setenv("DEIDENTIFY_SALT", "unit-test-salt")
        yield s3
    prelabel.reset()


def _pre_event(**data_object):
    data_object.setdefault("labels", ["Opacity", "Device"])
    data_object.setdefault("task_type", "classification+roi")
    data_object.setdefault("schema", "chest-xray")
    return {"version": "2018-10-16", "labelingJobArn": JOB, "dataObject": data_object}


def test_prelabel_stages_a_deidentified_instance(aws):
    response = prelabel.lambda_handler(_pre_event(source=INSTANCE, instructions="Mark <b>every</b> device"), None)
    key = f"chest-1/{INSTANCE}.dcm"
    assert response["isHumanAnnotationRequired"] is True
    assert response["taskInput"] == {
        "image": f"s3://{BUCKET}/{key}", "source": INSTANCE, "labels": ["Opacity", "Device"],
        "task_type": "classification+roi", "schema": "chest-xray", "instructions": "Mark <b>every</b> device",
        "image_geometry": {"rows": 128, "columns": 128, "frames": 1}}
    assert FakeOrthanc.made == [("http://orthanc.internal:8042", "gt", "s3cret")]  # from Secrets Manager
    staged = aws.get_object(Bucket=BUCKET, Key=key)
    body = staged["Body"].read()
    original, result = pydicom.dcmread(io.BytesIO(_dicom())), pydicom.dcmread(io.BytesIO(body))
    assert str(original.PatientName) and not result.PatientName
    assert result.PatientIdentityRemoved == "YES" and result.PixelData == original.PixelData
    assert staged["ContentType"] == "application/dicom"
    json.dumps(response)


def test_prelabel_passes_a_model_prelabel_to_the_viewer(aws):
    prelabel_answer = {"labels": [{"name": "Opacity", "present": True, "confidence": 0.91}], "model": "densenet@1"}
    response = prelabel.lambda_handler(_pre_event(source=INSTANCE, prelabel=prelabel_answer), None)
    assert response["taskInput"]["prelabel"] == prelabel_answer
    assert "prelabel" not in prelabel.lambda_handler(_pre_event(source=INSTANCE), None)["taskInput"]


@pytest.mark.parametrize("uncertain, policy", [(False, None), (True, "ignore"), (True, "absent")])
def test_prelabel_says_whether_the_schema_offers_uncertain(aws, uncertain, policy):
    # The line as `manifest` writes it for the schema (uncertain_policy only when "uncertain" is offered);
    # the task input carries it on, so the worker template offers the third choice exactly then.
    schema = dataclasses.replace(load_schema(ROOT / "schemas" / "chest-xray.yaml"), uncertain=uncertain,
                                 uncertain_policy=policy or "ignore")
    line = ManifestLine(source=INSTANCE, labels=schema.label_names, task_type=schema.task_type, schema=schema.name,
                        uncertain_policy=schema.line_uncertain_policy).to_dict()
    task = prelabel.lambda_handler(_pre_event(**line), None)["taskInput"]
    assert task.get("uncertain_policy") == policy and ("uncertain_policy" in task) is uncertain
    uri = f"s3://{BUCKET}/already/staged/image.dcm"  # a source-ref line too
    assert prelabel.lambda_handler(_pre_event(**{"source-ref": uri, "uncertain_policy": "present"}),
                                   None)["taskInput"]["uncertain_policy"] == "present"


def test_prelabel_refuses_a_bad_uncertain_policy_before_staging(aws, caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match=r"^dataObject\.uncertain_policy: 'maybe'"):
        prelabel.lambda_handler(_pre_event(source=INSTANCE, uncertain_policy="maybe"), None)
    assert FakeOrthanc.fetched == [] and aws.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_prelabel_is_idempotent(aws, monkeypatch):
    first = prelabel.lambda_handler(_pre_event(source=INSTANCE), None)
    puts = []
    real_put = prelabel._get_prelabeler().s3.put_object
    monkeypatch.setattr(prelabel._get_prelabeler().s3, "put_object",
                        lambda **kw: puts.append(kw) or real_put(**kw))
    second = prelabel.lambda_handler(_pre_event(source=INSTANCE), None)
    assert second == first
    assert puts == [] and FakeOrthanc.fetched == [INSTANCE]  # no second fetch, no second upload
    assert len(FakeOrthanc.made) == 1  # credentials and client cached per container


def test_prelabel_uses_kms_when_a_key_is_configured(aws, monkeypatch):
    kms = boto3.client("kms", region_name="us-east-1")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("STAGING_KMS_KEY_ID", key_id)
    prelabel.lambda_handler(_pre_event(source=INSTANCE), None)
    head = aws.head_object(Bucket=BUCKET, Key=f"chest-1/{INSTANCE}.dcm")
    assert head["ServerSideEncryption"] == "aws:kms" and key_id in head["SSEKMSKeyId"]


def test_prelabel_without_deidentification_keeps_the_original_bytes(aws, monkeypatch):
    monkeypatch.setenv("DEIDENTIFY", "false")
    prelabel.lambda_handler(_pre_event(source=INSTANCE), None)
    staged = aws.get_object(Bucket=BUCKET, Key=f"chest-1/{INSTANCE}.dcm")["Body"].read()
    assert staged == _dicom()


@pytest.mark.parametrize("bad", ["9f1c-orthanc-id", INSTANCE.upper(), INSTANCE + "-", "../" + INSTANCE[3:]])
def test_prelabel_rejects_a_bad_instance_id(aws, caplog, bad):
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="not an Orthanc instance ID") as info:
        prelabel.lambda_handler(_pre_event(source=bad), None)
    assert repr(bad) in str(info.value)
    assert "rejected pre-annotation event" in caplog.text
    assert FakeOrthanc.fetched == []


def test_prelabel_passes_source_ref_through(aws):
    uri = f"s3://{BUCKET}/already/staged/image.dcm"
    response = prelabel.lambda_handler(_pre_event(**{"source-ref": uri}), None)
    assert response == {"taskInput": {"image": uri, "source-ref": uri, "labels": ["Opacity", "Device"],
                                      "task_type": "classification+roi", "schema": "chest-xray"},
                        "isHumanAnnotationRequired": True}
    assert FakeOrthanc.made == [] and FakeOrthanc.fetched == []
    assert aws.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_prelabel_unknown_instance_skips_the_object(aws, caplog):
    missing = "ffffffff-ffffffff-ffffffff-ffffffff-ffffffff"
    with caplog.at_level(logging.ERROR):
        response = prelabel.lambda_handler(_pre_event(source=missing), None)
    assert response["isHumanAnnotationRequired"] is False
    assert response["taskInput"]["source"] == missing and "404" in response["taskInput"]["error"]
    assert f"Orthanc has no instance {missing}" in caplog.text
    assert aws.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


@pytest.mark.parametrize("status", [None, 500])
def test_prelabel_raises_when_orthanc_is_unreachable(aws, caplog, status):
    FakeOrthanc.fail_with = OrthancError(status, "boom", "http://orthanc.internal:8042/instances/x/file")
    with caplog.at_level(logging.ERROR), pytest.raises(OrthancError):
        prelabel.lambda_handler(_pre_event(source=INSTANCE), None)
    assert "raising so GT retries" in caplog.text
    assert ("unreachable" if status is None else "HTTP 500") in caplog.text


def test_prelabel_logs_and_raises_on_a_bad_event(aws, caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="dataObject"):
        prelabel.lambda_handler({"version": "2018-10-16", "labelingJobArn": JOB, "dataObject": {"x": 1}}, None)
    assert "rejected pre-annotation event" in caplog.text


def test_staging_key_rule():
    assert gt_prelabel.staging_key(JOB, INSTANCE) == f"chest-1/{INSTANCE}.dcm"
    with pytest.raises(ValueError, match="labelingJobArn"):
        gt_prelabel.staging_key(None, INSTANCE)
    with pytest.raises(ValueError, match="DEIDENTIFY"):
        gt_prelabel.PrelabelSettings.from_env({"DEIDENTIFY": "maybe"})
    assert gt_prelabel.PrelabelSettings.from_env({}).deidentify is True
    assert "unit" not in repr(gt_prelabel.PrelabelSettings.from_env({"DEIDENTIFY_SALT": "unit"}))


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


LABELS = ["Opacity", "Device"]
REPORT_PREFIX = "jobs/chest-1/annotations/consolidation-report/iteration-1/2026-01-31_12:00:00.json"


def _answer(opacity: bool, device: bool = False, rois=(), name: str = "Opacity") -> str:
    answer = {"labels": [{"name": name, "present": opacity}, {"name": "Device", "present": device}],
              "rois": list(rois), "image": {"rows": 64, "columns": 64, "frame": 0}}
    return json.dumps({"annotation": json.dumps(answer)})


def _box(x0, y0, x1, y1, label="Opacity"):
    return {"label": label, "shape": "rectangle", "points": [[x0, y0], [x1, y1]]}


def _put_payload(s3, payload):
    s3.put_object(Bucket=BUCKET, Key=PAYLOAD_KEY, Body=json.dumps(payload).encode())


def _report(s3, key=REPORT_PREFIX):
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def _labels(item):
    return {entry["name"]: entry for entry in item["labels"]}


def test_postlabel_consolidates_a_majority_in_the_label_shape(s3):
    # w3's answer is stored in S3 and referenced with GT's lower-case ``s3uri`` spelling.
    s3.put_object(Bucket=BUCKET, Key="answers/w3.json",
                  Body=_answer(False, rois=[_box(12, 10, 30, 31)]).encode())
    payload = [{"datasetObjectId": "0", "dataObject": {"source": "a", "labels": LABELS}, "annotations": [
        {"workerId": "w1", "annotationData": {"content": _answer(True, rois=[_box(10, 10, 30, 30)])}},
        {"workerId": "w2", "annotationData": {"content": _answer(True, rois=[_box(11, 9, 31, 30)])}},
        {"workerId": "w3", "annotationData": {"s3uri": f"s3://{BUCKET}/answers/w3.json"}},
    ]}]
    _put_payload(s3, payload)

    response = postlabel.lambda_handler(_event(labelCategories=LABELS), None)

    assert [r["datasetObjectId"] for r in response] == ["0"]
    item = response[0]["consolidatedAnnotation"]["content"]["chest"]
    assert set(item) >= {"labels", "rois", "image", "annotators", "agreement"}
    assert [entry["name"] for entry in item["labels"]] == LABELS  # one per schema label, schema order
    labels = _labels(item)
    assert labels["Opacity"]["present"] is True and labels["Device"]["present"] is False
    for entry in item["labels"]:
        assert set(entry) == {"name", "present", "confidence"} and 0.5 <= entry["confidence"] <= 1.0
    assert labels["Device"]["confidence"] > labels["Opacity"]["confidence"]  # 3/3 beats 2/3
    assert item["annotators"] == 3  # the s3uri answer was fetched and counted
    assert item["image"] == {"rows": 64, "columns": 64, "frame": 0}
    [roi] = item["rois"]
    assert roi["label"] == "Opacity" and roi["shape"] == "rectangle" and roi["confidence"] == 1.0
    assert len(roi["points"]) == 2
    assert set(item["agreement"]) == {"labels", "rois_mean_iou"}
    assert item["agreement"]["rois_mean_iou"] > 0.7
    json.dumps(response, allow_nan=False)  # the answer GT receives is strict JSON


def test_postlabel_reports_bad_objects_and_still_answers_the_others(s3, caplog):
    payload = [
        {"datasetObjectId": "0", "dataObject": {"source": "a", "labels": LABELS}, "annotations": [
            {"workerId": "w1", "annotationData": {"content": _answer(True)}},
            {"workerId": "w2", "annotationData": {"content": _answer(True)}},
        ]},
        {"dataObject": {"source": "no-id"}, "annotations": []},  # malformed: no datasetObjectId
        {"datasetObjectId": "2", "dataObject": {"source": "c", "labels": LABELS}, "annotations": [
            {"workerId": "w1", "annotationData": {"content": "{broken"}},
            {"workerId": "w2", "annotationData": {"s3Uri": f"s3://{BUCKET}/answers/missing.json"}},
            {"workerId": "w4", "annotationData": {"content": _answer(False)}},
        ]},
        {"datasetObjectId": "3", "annotations": [{"workerId": "w1", "annotationData": {"content": "nope"}}]},
        # A label name outside the schema: the library rejects the whole object.
        {"datasetObjectId": "4", "dataObject": {"source": "d", "labels": LABELS}, "annotations": [
            {"workerId": "w1", "annotationData": {"content": _answer(True, name="opacity")}},
        ]},
    ]
    _put_payload(s3, payload)

    with caplog.at_level(logging.ERROR):
        response = postlabel.lambda_handler(_event(), None)

    assert [r["datasetObjectId"] for r in response] == ["0", "2"]
    second = response[1]["consolidatedAnnotation"]["content"]["chest"]
    assert second["annotators"] == 1 and _labels(second)["Opacity"]["present"] is False
    # One log line per skip, naming the object and why.
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("payload[1].datasetObjectId" in line for line in lines)
    assert any("datasetObjectId 2" in line and "not valid JSON" in line for line in lines)
    assert any("datasetObjectId 2" in line and "missing.json" in line for line in lines)
    assert any("datasetObjectId 3" in line and "no usable worker answer" in line for line in lines)
    assert any("datasetObjectId 4" in line and "unknown label 'opacity'" in line for line in lines)
    report = _report(s3)
    assert (report["objects"], report["consolidated"], report["failed"]) == (5, 2, 3)
    assert {e["datasetObjectId"] for e in report["errors"] if e["level"] == "object"} == {None, "3", "4"}
    assert report["errorCount"] == len(report["errors"]) == 6  # 3 objects + 3 answers
    assert report["consolidation"]["items"] == 2 and report["consolidation"]["errors"] == 1


def test_postlabel_label_names_with_null_label_categories(s3):
    # labelCategories null: names come from the manifest lines' ``labels`` (union, first-seen order).
    payload = [
        {"datasetObjectId": "0", "dataObject": {"source": "a", "labels": ["Device"]}, "annotations": [
            {"workerId": "w1", "annotationData": {"content": _answer(True)}}]},
        {"datasetObjectId": "1", "dataObject": {"source": "b", "labels": ["Device", "Opacity"]}, "annotations": [
            {"workerId": "w1", "annotationData": {"content": _answer(False)}}]},
    ]
    _put_payload(s3, payload)
    response = postlabel.lambda_handler(_event(labelCategories=None), None)
    assert [[e["name"] for e in r["consolidatedAnnotation"]["content"]["chest"]["labels"]]
            for r in response] == [["Device", "Opacity"]] * 2
    assert _report(s3)["labelNamesSource"] == "dataObject.labels"

    # Neither labelCategories nor dataObject.labels: the names the answers use.
    for obj in payload:
        del obj["dataObject"]["labels"]
    _put_payload(s3, payload)
    response = postlabel.lambda_handler(_event(labelCategories=None), None)
    assert len(response) == 2
    assert [e["name"] for e in response[0]["consolidatedAnnotation"]["content"]["chest"]["labels"]] == LABELS
    assert _report(s3)["labelNamesSource"] == "answers"


def test_postlabel_consolidates_an_event_with_another_version_and_no_label_categories(s3, caplog):
    """Shaped like AWS's sample but with another ``version``, no ``labelCategories`` and a field this
    code does not know: consolidated, and the differences logged (issue 10)."""
    payload = [{"datasetObjectId": "0", "dataObject": {"source": "a", "labels": LABELS}, "annotations": [
        {"workerId": "w1", "annotationData": {"content": _answer(True)}},
        {"workerId": "w2", "annotationData": {"content": _answer(True)}}]}]
    _put_payload(s3, payload)
    event = _event(version="2018-10-06", someFutureField={"x": 1})
    del event["labelCategories"]
    with caplog.at_level(logging.WARNING):
        response = postlabel.lambda_handler(event, None)
    assert [r["datasetObjectId"] for r in response] == ["0"]
    assert _labels(response[0]["consolidatedAnnotation"]["content"]["chest"])["Opacity"]["present"] is True
    assert "version '2018-10-06' is not the documented '2018-10-16'" in caplog.text
    assert "someFutureField" in caplog.text


def test_postlabel_writes_the_report_under_output_config_with_kms(s3, monkeypatch):
    _put_payload(s3, [{"datasetObjectId": "0", "dataObject": {"source": "a", "labels": LABELS}, "annotations": [
        {"workerId": "w1", "annotationData": {"content": _answer(True)}}]}])
    calls = []
    client = postlabel._s3_client()
    original = client.put_object

    def spy(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(client, "put_object", spy)
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    response = postlabel.lambda_handler(
        _event(kmsKeyId=key_arn, outputConfig=f"s3://{BUCKET}/out/chest-1/annotations/"), None)
    assert len(response) == 1
    [put] = calls
    assert put["Bucket"] == BUCKET
    assert put["Key"] == "out/chest-1/annotations/consolidation-report/iteration-1/2026-01-31_12:00:00.json"
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"] == key_arn
    report = _report(s3, put["Key"])
    assert report["labelingJobArn"] == JOB and report["payload"] == f"s3://{BUCKET}/{PAYLOAD_KEY}"
    assert report["consolidation"]["label_names"] == LABELS and "workers" in report["consolidation"]


def test_postlabel_report_key_without_output_config_is_next_to_the_payload(s3):
    _put_payload(s3, [])
    event = _event()
    del event["outputConfig"]
    assert postlabel.lambda_handler(event, None) == []
    assert _report(s3)["objects"] == 0  # same folder GT keeps its consolidation-request in


def test_postlabel_report_write_failure_does_not_fail_the_invocation(s3, monkeypatch, caplog):
    _put_payload(s3, [{"datasetObjectId": "0", "dataObject": {"source": "a", "labels": LABELS}, "annotations": [
        {"workerId": "w1", "annotationData": {"content": _answer(True)}}]}])

    def denied(**kwargs):
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(postlabel._s3_client(), "put_object", denied)
    with caplog.at_level(logging.ERROR):
        response = postlabel.lambda_handler(_event(), None)
    assert [r["datasetObjectId"] for r in response] == ["0"]
    assert "could not write the consolidation report" in caplog.text and "AccessDenied" in caplog.text


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
