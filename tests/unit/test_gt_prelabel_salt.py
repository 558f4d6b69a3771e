"""The de-identification salt comes from its own secret in AWS, never from a plain variable; the GT pre-label
Lambda and the portal read it with one reader (labeling.dicom.deidentify.read_salt)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from labeling.dicom.deidentify import DEV_SALT, SaltError
from labeling.gt.prelabel import Prelabeler, PrelabelSettings
from labeling.portal.images import salt_for
from labeling.portal.settings import PortalSettings


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_salt_is_read_once_from_its_secret(aws_env):
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        arn = secrets.create_secret(Name="salt", SecretString="per-deployment-salt-Aa1")["ARN"]
        settings = PrelabelSettings.from_env({"DEIDENTIFY_SALT_SECRET_ARN": arn, "STAGING_BUCKET": "b"})
        assert settings.salt_secret_arn == arn and "per-deployment" not in repr(settings)
        prelabeler = Prelabeler(settings, s3=None, secrets=secrets)
        assert prelabeler.salt() == b"per-deployment-salt-Aa1"
        secrets.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        assert prelabeler.salt() == b"per-deployment-salt-Aa1"  # cached per container


def test_without_a_salt_secret_the_setting_or_the_dev_salt_is_used(aws_env):
    assert Prelabeler(PrelabelSettings.from_env({"DEIDENTIFY_SALT": "local"}), s3=None).salt() == b"local"
    assert Prelabeler(PrelabelSettings.from_env({}), s3=None).salt() == DEV_SALT


def test_an_empty_salt_secret_is_refused_in_the_same_words_by_the_lambda_and_the_portal(aws_env):
    arn = "arn:aws:secretsmanager:us-east-1:1:secret:s"
    prelabeler = Prelabeler(PrelabelSettings(orthanc_url=None, secret_arn=None, bucket=None, salt_secret_arn=arn),
                            s3=None, secrets=_Empty())
    with pytest.raises(SaltError) as lambda_error:
        prelabeler.salt()
    with pytest.raises(SaltError) as portal_error:
        salt_for(PortalSettings(deidentify_salt_secret_arn=arn), _Empty())
    assert str(lambda_error.value) == str(portal_error.value) == (
        f"de-identification salt secret {arn}: it is empty; it must hold a non-empty string (the per-deployment salt)")


def test_the_lambda_and_the_portal_read_the_same_salt_from_the_same_settings(aws_env):
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        arn = secrets.create_secret(Name="salt", SecretString="per-deployment-salt-Bb2")["ARN"]
        lambda_env = {"DEIDENTIFY_SALT_SECRET_ARN": arn, "DEIDENTIFY_SALT": "ignored-beside-the-secret"}
        portal_env = {"DEIDENTIFY_SALT_SECRET_ARN": arn, "PORTAL_DEIDENTIFY_SALT": "ignored-beside-the-secret"}
        assert (Prelabeler(PrelabelSettings.from_env(lambda_env), s3=None, secrets=secrets).salt()
                == salt_for(PortalSettings.from_env(portal_env), secrets) == b"per-deployment-salt-Bb2")
    assert (Prelabeler(PrelabelSettings.from_env({"DEIDENTIFY_SALT": "local"}), s3=None).salt()
            == salt_for(PortalSettings.from_env({"PORTAL_DEIDENTIFY_SALT": "local"})) == b"local")
    assert Prelabeler(PrelabelSettings.from_env({}), s3=None).salt() == salt_for(PortalSettings()) == DEV_SALT


class _Empty:
    """Secrets Manager refuses to store an empty string; stand in for a secret that reads empty."""

    def get_secret_value(self, SecretId):  # noqa: N803 - boto3's name
        return {"SecretString": ""}
