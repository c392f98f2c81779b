"""Who is running a job, and is that process still there.

A job records host, pid and the process's start time; the start time tells a live process
apart from a new one that got the same pid (containers restart with the same small pids).
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

HOST = socket.gethostname()


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return text[text.rindex(")") + 2:].split()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), or None where unknown."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def pid_alive(pid: int, started: int | None = None) -> bool:
    """Whether process `pid` on this host runs (zombies count as dead), and, when `started` is
    given and /proc can tell, whether it is still the process that started then."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc: trust kill()
    if fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started

