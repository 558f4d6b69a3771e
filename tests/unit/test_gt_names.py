"""The GT Lambdas' environment names are defined once (labeling/gt/names.py): the pre-label settings read
every one the component may set, and the module stays import-light (the Pulumi program imports it)."""

from __future__ import annotations

import subprocess
import sys

from labeling.gt import names as N
from labeling.gt.prelabel import PrelabelSettings


class _Asked(dict):
    """An empty environment that records which names were asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key, default=None):  # type: ignore[override]
        self.asked.add(key)
        return default


def test_prelabel_settings_read_every_name_but_the_logger_s():
    env = _Asked()
    PrelabelSettings.from_env(env)
    assert env.asked == N.ALL - {N.POWERTOOLS_SERVICE_NAME}  # that one is Powertools' own


def test_a_setting_is_read_under_its_name():
    settings = PrelabelSettings.from_env({N.ORTHANC_URL: "http://o:8042", N.ORTHANC_SECRET_ARN: "arn:o",
                                          N.STAGING_BUCKET: "b", N.STAGING_KMS_KEY_ID: "k", N.DEIDENTIFY: "false",
                                          N.DEIDENTIFY_SALT_SECRET_ARN: "arn:salt"})
    assert (settings.orthanc_url, settings.secret_arn, settings.bucket, settings.kms_key_id, settings.deidentify,
            settings.salt_secret_arn) == ("http://o:8042", "arn:o", "b", "k", False, "arn:salt")


def test_names_module_imports_nothing_heavy():
    probe = ("import sys, labeling.gt.names; "
             "print(sorted(m for m in ('pydicom', 'boto3', 'highdicom', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
