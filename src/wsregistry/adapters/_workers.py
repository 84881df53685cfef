"""Warn when the in-memory backend runs in one of several server worker processes.

``uvicorn --workers 2`` (or gunicorn, hypercorn) runs the application in several
processes. With the default in-memory backend each one knows only its own
connections: a user on worker A is offline for worker B, and sends from B never
reach them. Nothing fails, users are silently split, so the adapters say it
loudly, once per process, at WARNING.

Detection (Linux, best effort, never raises): the parent process is a Python
WebSocket server (``uvicorn``, ``gunicorn``, ``hypercorn`` in its command line)
with more than one worker child, or started with ``--workers N`` (N > 1).
"""

from __future__ import annotations

import logging
import os
import re

from ..backends.memory import MemoryBackend
from ..registry import Registry

__all__ = ["server_workers", "warn_if_split"]

logger = logging.getLogger("wsregistry")

_SERVERS = re.compile(r"\b(uvicorn|gunicorn|hypercorn)\b")
_WORKERS_FLAG = re.compile(r"(?:--workers|-w)[ =](\d+)")
_HELPERS = ("resource_tracker", "semaphore_tracker", "forkserver")
_warned = False
_workers: int | None = None  # server_workers(), measured once per process


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as file:
        return file.read().replace(b"\0", b" ").decode("utf-8", "replace")


def server_workers() -> int:
    """How many worker processes the server that started this process runs (1 if unknown)."""
    try:
        parent = os.getppid()
        command = _cmdline(parent)
        if not _SERVERS.search(command):
            return 1
        flag = _WORKERS_FLAG.search(command)
        if flag is not None and int(flag.group(1)) > 1:
            return int(flag.group(1))
        with open(f"/proc/{parent}/task/{parent}/children") as file:
            children = [int(pid) for pid in file.read().split()]
        workers = 0
        for child in children:
            try:
                if not any(helper in _cmdline(child) for helper in _HELPERS):
                    workers += 1
            except OSError:
                continue  # it just exited
        return max(workers, 1)
    except (OSError, ValueError):
        return 1


def warn_if_split(registry: Registry) -> None:
    """Log a WARNING (once per process) if ``registry`` is in-memory in a multi-worker server."""
    global _warned, _workers
    if _warned or not isinstance(registry.backend, MemoryBackend):
        return
    if _workers is None:
        _workers = server_workers()
    workers = _workers
    if workers <= 1:
        return
    _warned = True
    logger.warning(
        "this process is one of %d server workers, but its wsregistry Registry uses the "
        "in-memory backend: each worker knows only its own connections, so sends, broadcasts "
        "and presence miss the users connected to the other workers. Give every worker a "
        "shared backend (RedisBackend) or run one worker.",
        workers,
    )
