"""The Redis backend's counters, and the supervision of its background loops.

Every part of the backend counts into one :class:`Counters` per run (a run is
``start()`` to ``aclose()``), so ``health()`` reads one place. :func:`supervise`
runs a background loop forever: a loop that raises is logged with its
traceback, counted in ``task_failures`` and restarted after a backoff; none
dies silently.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("wsregistry")


class Backoff:
    """Jittered exponential backoff: ``uniform(d/2, d)``, ``d`` doubling up to ``cap``."""

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def reset(self) -> None:
        """Start over after a success."""
        self.attempt = 0

    def next_delay(self) -> float:
        """The next delay in seconds."""
        delay = min(self.cap, self.base * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return random.uniform(delay / 2, delay)


@dataclasses.dataclass
class Counters:
    """What one run of the backend counted (see ``RedisBackend.health`` for each field)."""

    published: int = 0
    publish_failures: int = 0
    rejected: int = 0
    oversized: int = 0
    batches: int = 0
    lingered: int = 0
    received: int = 0
    processed: int = 0
    delivered: int = 0
    unmatched: int = 0
    own: int = 0
    malformed: int = 0
    probes: int = 0
    probe_failures: int = 0
    probes_late: int = 0
    lease_lost: int = 0
    resyncs: int = 0
    reaped: int = 0
    task_failures: int = 0
    errors: int = 0
    reconnects: int = 0
    last_error: str = ""

    def error(self, exc: BaseException | None, detail: str = "") -> None:
        """Count one error and remember what it was."""
        self.errors += 1
        self.last_error = detail or repr(exc)

    def detail(self) -> dict[str, Any]:
        """The counters for ``BackendHealth.detail`` (``errors``/``reconnects`` have fields)."""
        values = dataclasses.asdict(self)
        del values["errors"], values["reconnects"]
        return values


async def supervise(
    name: str,
    loop: Callable[[], Awaitable[None]],
    counters: Counters,
    backoff: Backoff,
) -> None:
    """Run ``loop`` until cancelled: log, count and restart it whenever it fails or returns."""
    while True:
        try:
            await loop()
            raise RuntimeError(f"{name} loop returned")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            counters.task_failures += 1
            counters.error(exc)
            logger.exception("redis backend %s task failed; restarting it", name)
        await asyncio.sleep(backoff.next_delay())
