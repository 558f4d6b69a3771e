"""Tier-2 fixtures. The session's ONE real Orthanc + PostgreSQL (``local_stack``, ``stack_info``,
``connection``, ``client``) lives in tests/conftest.py so the browser tier shares it.

Tests share the server, so each one creates DICOM files with its own fresh UIDs and asserts on
those, not on global counts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
from pydicom.uid import generate_uid

from labeling.orthanc.connection import OrthancConnection
from tests.integration.dicom_files import Series, dicom_bytes


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture()
def orthanc_env(connection: OrthancConnection) -> dict[str, str]:
    """Environment for running ``python -m labeling ...`` against the session's Orthanc."""
    env = dict(os.environ)
    env.update(ORTHANC_URL=connection.url, ORTHANC_USERNAME=connection.username,
               ORTHANC_PASSWORD=connection.password)
    return env


@pytest.fixture()
def make_series(tmp_path: Path) -> Callable[..., Series]:
    """``make_series(count, name=..., size=...)``: a folder holding one fresh series of ``count`` files."""

    def make(count: int, *, name: str = "series", size: int = 64) -> Series:
        folder = tmp_path / name
        folder.mkdir(parents=True)
        series = Series(folder, f"IT-{generate_uid()[-12:]}", generate_uid(), generate_uid(), [], [])
        for number in range(count):
            uid = generate_uid()
            path = folder / f"{number:05d}.dcm"
            path.write_bytes(dicom_bytes(patient_id=series.patient_id, study_uid=series.study_uid,
                                         series_uid=series.series_uid, sop_uid=uid, size=size,
                                         number=number))
            series.sop_uids.append(uid)
            series.files.append(path)
        return series

    return make
