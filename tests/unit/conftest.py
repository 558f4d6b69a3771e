"""Shared fixtures: the Pulumi program run once per stack under mocks (components/offline.py)."""

from __future__ import annotations

import pytest

from components.offline import Recording
from tests.unit.programs import program

STACKS = ("dev", "prod")


@pytest.fixture(scope="session")
def recordings() -> dict[str, Recording]:
    return {stack: program(stack) for stack in STACKS}


@pytest.fixture(scope="session", params=STACKS)
def recording(request, recordings) -> Recording:
    return recordings[request.param]
