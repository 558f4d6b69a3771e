"""The de-identification salt comes from its own secret in AWS, never from a plain variable."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from labeling.gt.prelabel import DEV_SALT, Prelabeler, PrelabelSettings


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


def test_an_empty_salt_secret_is_refused(aws_env):
    prelabeler = Prelabeler(PrelabelSettings(orthanc_url=None, secret_arn=None, bucket=None,
                                             salt_secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:s"),
                            s3=None, secrets=_Empty())
    with pytest.raises(ValueError, match="salt is empty"):
        prelabeler.salt()


class _Empty:
    """Secrets Manager refuses to store an empty string; stand in for a secret that reads empty."""

    def get_secret_value(self, SecretId):  # noqa: N803 - boto3's name
        return {"SecretString": ""}
