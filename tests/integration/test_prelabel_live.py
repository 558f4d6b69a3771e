"""The pre-label Lambda against the session's real Orthanc; S3 and Secrets Manager are moto's."""

from __future__ import annotations

import importlib.util
import io
import json

import boto3
import pydicom
import pytest
from moto import mock_aws
from pydicom.uid import generate_uid

from labeling.orthanc.connection import OrthancConnection
from labeling.orthanc.local_stack import REPO_ROOT
from labeling.orthanc.client import OrthancClient
from tests.integration.dicom_files import dicom_bytes

pytestmark = pytest.mark.integration

BUCKET = "da-it-labeling-annotations"
JOB = "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/it-prelabel"


def _handler():
    spec = importlib.util.spec_from_file_location("prelabel_handler_it",
                                                  REPO_ROOT / "lambda_src" / "prelabel" / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def staged_env(monkeypatch, connection: OrthancConnection):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "STAGING_KMS_KEY_ID", "DEIDENTIFY"):
        monkeypatch.delenv(var, raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
            Name="it/orthanc", SecretString=json.dumps({"username": connection.username,
                                                        "password": connection.password}))["ARN"]
        monkeypatch.setenv("ORTHANC_URL", connection.url)
        monkeypatch.setenv("ORTHANC_SECRET_ARN", arn)
        monkeypatch.setenv("STAGING_BUCKET", BUCKET)
        monkeypatch.setenv("DEIDENTIFY_SALT", "integration-salt")
        yield s3


def test_prelabel_stages_a_real_instance_deidentified(client: OrthancClient, staged_env):
    patient = f"IT-PRE-{generate_uid()[-10:]}"
    raw = dicom_bytes(patient_id=patient, study_uid=generate_uid(), series_uid=generate_uid(), size=32)
    instance_id = client.upload(raw).instance_id
    handler = _handler()
    event = {"version": "2018-10-16", "labelingJobArn": JOB,
             "dataObject": {"source": instance_id, "labels": ["Opacity"], "task_type": "classification",
                            "schema": "chest-xray"}}

    response = handler.lambda_handler(event, None)

    key = f"it-prelabel/{instance_id}.dcm"
    assert response["isHumanAnnotationRequired"] is True
    assert response["taskInput"]["image"] == f"s3://{BUCKET}/{key}"
    assert response["taskInput"]["image_geometry"] == {"rows": 32, "columns": 32, "frames": 1}
    staged = staged_env.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    original = pydicom.dcmread(io.BytesIO(client.instance_file(instance_id)))
    result = pydicom.dcmread(io.BytesIO(staged))
    assert str(original.PatientName) == "Test^Upload"
    assert not result.get("PatientName") and b"Test^Upload" not in staged and patient.encode() not in staged
    assert result.PixelData == original.PixelData
    assert result.SOPInstanceUID != original.SOPInstanceUID and result.PatientIdentityRemoved == "YES"

    # A second call (GT retry) stages nothing new and answers the same.
    assert handler.lambda_handler(event, None) == response
    assert staged_env.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 1


def test_prelabel_unknown_real_instance_is_skipped(staged_env):
    handler = _handler()
    missing = "00000000-11111111-22222222-33333333-44444444"
    response = handler.lambda_handler({"version": "2018-10-16", "labelingJobArn": JOB,
                                       "dataObject": {"source": missing, "labels": ["Opacity"]}}, None)
    assert response["isHumanAnnotationRequired"] is False and "404" in response["taskInput"]["error"]
    assert staged_env.list_objects_v2(Bucket=BUCKET)["KeyCount"] == 0
