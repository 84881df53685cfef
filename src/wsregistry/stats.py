"""Snapshots of the registry's counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["BackendHealth", "RegistryStats"]


@dataclass(frozen=True)
class BackendHealth:
    """The state of a backend, as :meth:`Backend.health` reports it.

    Attributes:
        name: short backend name (``"memory"``, ``"redis"``).
        connected: whether the broker is reachable now (always ``True`` in memory).
        errors: broker errors since start (failed publishes, lost subscriptions...).
        reconnects: how many times the backend re-established its broker link.
        detail: backend-specific extra fields.
    """

    name: str
    connected: bool = True
    errors: int = 0
    reconnects: int = 0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistryStats:
    """A snapshot of :meth:`Registry.stats`; counters are since the registry started.

    Attributes:
        connections: live connections in this process.
        keys: distinct keys with at least one live connection in this process.
        groups: groups with at least one member in this process.
        queued: messages waiting in outbound queues now.
        queued_bytes: payload bytes (UTF-8 for text) waiting in outbound queues now.
        sent: messages handed to transports.
        dropped: messages discarded by an overflow policy or because their
            connection closed before they were written.
        slow_consumer_closes: connections closed because their queue overflowed.
        send_errors: connections unregistered because their transport failed.
        backend_errors: errors the backend reported (publishes, subscriptions, presence).
        backend: the backend's own health report.
        writer_tasks: writer tasks running now (each waiting send holds one: a
            high number means many peers are applying back-pressure).
        connects: connections registered.
        disconnects: connections unregistered, for any reason (the client
            left, the app or the registry closed it, its transport failed,
            shutdown).
        overflows: messages that did not fit a connection's queue, so the
            overflow policy applied (with the default policy, each one closed a
            slow consumer).
        dropped_closed: the part of ``dropped`` discarded because the
            connection closed before they were written; the rest was dropped
            by the overflow policy.
    """

    connections: int
    keys: int
    groups: int
    queued: int
    queued_bytes: int
    sent: int
    dropped: int
    slow_consumer_closes: int
    send_errors: int
    backend_errors: int
    backend: BackendHealth
    writer_tasks: int = 0
    connects: int = 0
    disconnects: int = 0
    overflows: int = 0
    dropped_closed: int = 0
