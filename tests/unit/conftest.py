"""Shared fixtures: the Pulumi program run once per stack under mocks (components/checks/offline.py)."""

from __future__ import annotations

import gc

import pytest

from components.checks.offline import Recording
from tests.unit.programs import PORTAL_PROBE_KEY, program

STACKS = ("dev", "prod")


@pytest.fixture(scope="session")
def recordings() -> dict[str, Recording]:
    return {stack: program(stack) for stack in STACKS}


@pytest.fixture(scope="session", params=STACKS)
def recording(request, recordings) -> Recording:
    return recordings[request.param]


def pytest_collection_finish(session) -> None:
    """Start the portal-import probe (a fresh interpreter, seconds of imports) in the background
    when its test is selected, so it runs beside the mocks tests rather than after them.

    Then freeze what collection imported (gc.freeze): a program run allocates tens of thousands of
    short-lived Pulumi objects beside ~350,000 long-lived ones from the imports (pulumi_aws), and
    every full collection walked them all - a third of a run's CPU time (bench/mocks_suite.py).
    """
    if any(item.name == "test_dockerfile_installs_every_distribution_the_portal_imports" for item in session.items):
        from tests.unit.test_portal_component import start_portal_import_probe

        session.config.stash[PORTAL_PROBE_KEY] = start_portal_import_probe()
    gc.freeze()
