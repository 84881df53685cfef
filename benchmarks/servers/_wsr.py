"""What the three wsregistry servers share: the registry and how it is driven."""

from __future__ import annotations

import os
from typing import Any

from benchmarks.servers.base import Options
from benchmarks.wire import Message
from wsregistry import Registry

__all__ = ["RegistryApp", "make_registry"]


METRICS_ENV = "WSREGISTRY_BENCH_METRICS"
"""``1`` attaches a Prometheus collector, ``direct`` one with ``time_queued_frames=False``
(``benchmarks.metrics_overhead``)."""


def make_registry(options: Options) -> Registry:
    """A registry with default limits, on the backend ``options`` asks for."""
    if options.backend == "memory":
        registry = Registry()
    elif options.backend == "redis":
        from wsregistry.backends.redis import RedisBackend

        registry = Registry(backend=RedisBackend(options.redis_url, namespace=options.channel))
    else:
        raise ValueError(f"unknown backend {options.backend!r}")
    metrics = os.environ.get(METRICS_ENV)
    if metrics in ("1", "direct"):
        from wsregistry.prometheus import RegistryCollector

        RegistryCollector(registry, prometheus_registry=None, time_queued_frames=metrics == "1")
    return registry


class RegistryApp:
    """The application side: one ``registry.broadcast`` / ``registry.send`` per message."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.port = 0
        self._observer = registry.observer  # a collector's, with WSREGISTRY_BENCH_METRICS=1

    def metrics(self, on: bool) -> bool:
        """Attach (``on``) or detach the collector's observer; whether metrics are on now."""
        self.registry.observer = self._observer if on else None
        return self.registry.observer is not None

    def count(self) -> int:
        return len(self.registry.connections())

    def users(self) -> list[str]:
        return [str(conn.key) for conn in self.registry.connections()]

    async def broadcast(self, message: Message) -> None:
        await self.registry.broadcast(message)

    async def send(self, user: str, message: Message) -> None:
        await self.registry.send(user, message)

    def stats(self) -> dict[str, Any]:
        stats = self.registry.stats()
        return {
            "queued": stats.queued,
            "sent": stats.sent,
            "dropped": stats.dropped,
            "slow_consumer_closes": stats.slow_consumer_closes,
            "send_errors": stats.send_errors,
            "backend_errors": stats.backend_errors,
        }
