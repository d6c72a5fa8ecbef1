"""Polling the real stack until something holds: one helper for every integration test, in a
synchronous and an asynchronous form (the latter lets the test's own tasks, a stand-in server say,
run while it waits)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], what: str, timeout: float, *, every: float = 0.2) -> None:
    """Return once ``predicate()`` is true; fail the test, naming ``what``, after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


async def wait_for_async(predicate: Callable[[], object], what: str, timeout: float, *, every: float = 0.2) -> None:
    """:func:`wait_for`, sleeping on the event loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(every)
