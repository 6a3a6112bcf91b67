"""Polling until a condition holds, for the test suites and the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 60.0,
    what: str = "condition",
    *,
    interval: float = 0.2,
    context: Callable[[], str] | None = None,
    error: type[Exception] = AssertionError,
) -> Any:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return that.

    After ``timeout`` seconds raise ``error`` naming ``what``, followed by ``context()`` (e.g. a process log).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = f"\n{context()}" if context is not None else ""
    raise error(f"timed out after {timeout}s waiting for {what}{detail}")
