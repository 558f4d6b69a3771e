"""Fixtures shared by the integration and browser tiers: ONE real Orthanc + PostgreSQL per session.

The stack (labeling/orthanc/local_stack.py) lives in a fresh work directory under /tmp (PostgreSQL runs as the
``postgres`` user, which must be able to reach it; pytest's own tmp dirs are private to root) and is
stopped at the end of the session, failures included. It starts only when a test asks for it, so a
unit-only run starts nothing. Missing Orthanc/PostgreSQL binaries FAIL the session with the install
command: these tests are part of the suite, never silently skipped.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from labeling.orthanc.connection import OrthancConnection
from labeling.orthanc.local_stack import LocalStack, LocalStackError, StackInfo
from labeling.orthanc.client import OrthancClient


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
