"""Polling for something another thread, process or browser will make true: the one wait of the
tests and the benchmarks."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class GaveUp(RuntimeError):
    """What `check` raises to stop a wait at once: waiting longer cannot help (the server died)."""


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.25) -> Any:
    """Polls `check` until it returns something truthy and returns that; AssertionError naming
    `what` after `timeout` s. Errors from `check` count as "not yet" (stale elements while
    Streamlit redraws, a file between two writes) and the last one is reported; GaveUp ends the
    wait at once."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except GaveUp:
            raise
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else "")) from last_error
