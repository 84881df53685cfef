"""The in-memory backend: the default, for one process.

Registries that share a :class:`MemoryHub` (in the same process and event loop)
behave like nodes of a cluster: sends and broadcasts reach every registry of
the hub and presence spans them. It has no broker, so it never fails; delivery
is exactly-once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..stats import BackendHealth
from .base import Backend, Envelope, LocalNode

if TYPE_CHECKING:
    from .._types import Key
    from ..connection import Connection

__all__ = ["MemoryBackend", "MemoryHub"]


class MemoryHub:
    """A set of in-memory nodes that see each other, like one broker."""

    def __init__(self) -> None:
        self._nodes: dict[str, LocalNode] = {}

    def _join(self, node: LocalNode) -> None:
        self._nodes[node.node_id] = node

    def _leave(self, node: LocalNode) -> None:
        self._nodes.pop(node.node_id, None)

    def _others(self, node_id: str) -> list[LocalNode]:
        return [node for other_id, node in self._nodes.items() if other_id != node_id]

    def _all(self) -> list[LocalNode]:
        return list(self._nodes.values())


class MemoryBackend(Backend):
    """Keeps everything in this process.

    Args:
        hub: share one hub between registries to make them a cluster (tests,
            several registries in one app). By default each backend has its own.
    """

    def __init__(self, *, hub: MemoryHub | None = None) -> None:
        self._hub = hub if hub is not None else MemoryHub()
        self._node: LocalNode | None = None

    async def start(self, node: LocalNode) -> None:
        """Join the hub."""
        self._node = node
        self._hub._join(node)

    async def aclose(self) -> None:
        """Leave the hub. Idempotent."""
        if self._node is not None:
            self._hub._leave(self._node)
            self._node = None

    async def publish(self, envelope: Envelope) -> None:
        """Deliver ``envelope`` to the hub's other registries, synchronously."""
        for node in self._hub._others(envelope.origin):
            node.deliver(envelope)

    async def connection_added(self, conn: Connection, *, first_of_key: bool) -> None:
        """Nothing to do: presence is read from the registries' indexes."""

    def connection_removed(self, conn: Connection, *, last_of_key: bool) -> None:
        """Nothing to do."""

    async def group_joined(self, conn: Connection, group: str, *, first_of_group: bool) -> None:
        """Nothing to do."""

    def group_left(self, conn: Connection, group: str, *, last_of_group: bool) -> None:
        """Nothing to do."""

    async def presence_count(self, key: Key) -> int:
        """Sum of ``key``'s connections over the hub's registries."""
        return sum(node.local_count(key) for node in self._hub._all())

    async def online_keys(self) -> frozenset[Key]:
        """Union of the hub's registries' keys."""
        keys: set[Key] = set()
        for node in self._hub._all():
            keys.update(node.local_keys())
        return frozenset(keys)

    def health(self) -> BackendHealth:
        """Always connected."""
        return BackendHealth(name="memory", detail={"nodes": len(self._hub._nodes)})
