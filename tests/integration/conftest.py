"""Tier-2 fixtures: ONE real Orthanc + PostgreSQL per test session (labeling/local_stack.py).

The stack lives in a fresh work directory under /tmp (PostgreSQL runs as the ``postgres`` user,
which must be able to reach it; pytest's own tmp dirs are private to root) and is stopped at the
end of the session, failures included. Missing Orthanc/PostgreSQL binaries FAIL the session with
the install command: these tests are part of the suite, never silently skipped.

Tests share the server, so each one creates DICOM files with its own fresh UIDs and asserts on
those, not on global counts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest
from pydicom.uid import generate_uid

from labeling.connection import OrthancConnection
from labeling.local_stack import LocalStack, LocalStackError, StackInfo
from labeling.orthanc_client import OrthancClient
from tests.integration.dicom_files import Series, dicom_bytes


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    workdir = Path(tempfile.mkdtemp(prefix="dicom-annotate-it-"))
    stack = LocalStack(workdir)
    try:
        try:
            stack.up(timeout=90)
        except LocalStackError as exc:
            pytest.fail(f"the integration tests need the local Orthanc + PostgreSQL stack: {exc}",
                        pytrace=False)
        yield stack
    finally:
        try:
            stack.down()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_info(local_stack: LocalStack) -> StackInfo:
    return local_stack.status()


@pytest.fixture(scope="session")
def connection(local_stack: LocalStack) -> OrthancConnection:
    return local_stack.connection()


@pytest.fixture(scope="session")
def client(connection: OrthancConnection) -> Iterator[OrthancClient]:
    with OrthancClient.from_connection(connection) as orthanc:
        yield orthanc


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
