"""Helpers shared by the portal's browser tests."""

from __future__ import annotations

from typing import Any

import pytest

from labeling.portal.local import start_local_portal, stop_local_portal


def login(browser: Any, url: str, name: str, password: str) -> Any:
    """A fresh browser context logged in as ``name``; ``page.errors`` collects uncaught page errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(f"{url}/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
    page.click("#login-submit")
    page.wait_for_url(f"{url}/")
    return page


@pytest.fixture(scope="module")
def portal(local_stack) -> Any:
    """A portal (``portal serve`` subprocess) beside the session's stack, for one test module."""
    url, process = start_local_portal(local_stack.workdir)
    yield url
    stop_local_portal(process)
