"""``manifest --level``: argument checks before any request (the grouping itself is tested against
the real Orthanc in tests/integration/test_manifest_series.py, the ordering in test_series.py)."""

from __future__ import annotations

import pytest

from labeling.cli import main as cli_main
from labeling.manifest.build import LEVELS, build_manifest


class NoRequests:
    def find(self, *args, **kwargs):
        raise AssertionError("no request may be sent for a bad level")

    request = find


def test_unknown_level_is_refused_before_any_request():
    with pytest.raises(ValueError, match="level must be one of instance, series, got 'study'"):
        build_manifest(NoRequests(), schema_name="s", labels=["A"], task_type="classification", level="study")
    assert LEVELS == ("instance", "series")


def test_cli_level_choices(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        cli_main(["manifest", "--schema", "schemas/ct-nodule.yaml", "--out", str(tmp_path / "m"), "--level", "study"])
    assert info.value.code == 2
    assert "--level: invalid choice: 'study'" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
