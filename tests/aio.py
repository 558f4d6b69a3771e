"""Run a coroutine to completion on a loop of its own, in a thread of its own.

One pytest process runs every tier (``make test``): while the browser tests' session-scoped Playwright
(sync API) is alive, the main thread has a running event loop, where ``asyncio.run`` refuses to start;
and the Pulumi mocks of the unit tests run on the main thread's current loop, which ``asyncio.run`` there
would leave unset. A worker thread touches neither.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any, Coroutine, Optional


def run_isolated(coroutine: Coroutine[Any, Any, Any], timeout: Optional[float] = None) -> Any:
    """``asyncio.run(coroutine)`` in a new thread (with ``asyncio.wait_for`` when ``timeout`` is given)."""
    awaited = coroutine if timeout is None else asyncio.wait_for(coroutine, timeout)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="test-loop") as pool:
        return pool.submit(asyncio.run, awaited).result()
