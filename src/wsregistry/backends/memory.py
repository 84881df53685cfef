"""The in-memory backend: the default, for one process.

Registries that share a :class:`MemoryHub` (in the same process and event loop)
behave like nodes of a cluster: sends and broadcasts reach every registry of
the hub and presence spans them. It has no broker, so it never fails; delivery
is exactly-once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..stats import BackendHealth
from .base import Backend, LocalNode

if TYPE_CHECKING:
    from .._types import Key
    from ..envelope import Envelope

__all__ = ["MemoryBackend", "MemoryHub"]


class MemoryHub:
    """A set of in-memory nodes that see each other, like one broker.

    Attributes:
        shared: whether more than one registry has joined (read, do not set).
    """

    def __init__(self) -> None:
        self._nodes: dict[str, LocalNode] = {}
        self.shared = False  # whether more than one node has joined

    def __len__(self) -> int:
        return len(self._nodes)

    def join(self, node: LocalNode) -> None:
        """Add ``node`` (a started registry) to the hub."""
        self._nodes[node.node_id] = node
        self.shared = len(self._nodes) > 1

    def leave(self, node: LocalNode) -> None:
        """Remove ``node`` from the hub. Idempotent."""
        self._nodes.pop(node.node_id, None)
        self.shared = len(self._nodes) > 1

    def others(self, node_id: str) -> list[LocalNode]:
        """Every node of the hub but ``node_id``."""
        return [node for other_id, node in self._nodes.items() if other_id != node_id]

    def nodes(self) -> list[LocalNode]:
        """Every node of the hub."""
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

    @property
    def reaches_other_nodes(self) -> bool:
        """Whether another registry shares the hub (a lone registry publishes nothing)."""
        return self._hub.shared

    async def start(self, node: LocalNode) -> None:
        """Join the hub (again, when the registry is entered again)."""
        self._node = node
        self._hub.join(node)

    async def aclose(self) -> None:
        """Leave the hub. Idempotent."""
        if self._node is not None:
            self._hub.leave(self._node)
            self._node = None

    async def publish(self, envelope: Envelope) -> None:
        """Deliver ``envelope`` to the hub's other registries, synchronously."""
        for node in self._hub.others(envelope.origin):
            node.deliver(envelope)

    async def connection_added(self, connection_id: str, key: Key, *, first_of_key: bool) -> None:
        """Nothing to do: presence is read from the registries' indexes."""

    def connection_removed(self, connection_id: str, key: Key, *, last_of_key: bool) -> None:
        """Nothing to do."""

    async def group_joined(self, group: str, *, first_of_group: bool) -> None:
        """Nothing to do."""

    def group_left(self, group: str, *, last_of_group: bool) -> None:
        """Nothing to do."""

    async def presence_count(self, key: Key) -> int:
        """Sum of ``key``'s connections over the hub's registries."""
        return sum(node.local_count(key) for node in self._hub.nodes())

    async def online_keys(self) -> frozenset[Key]:
        """Union of the hub's registries' keys."""
        keys: set[Key] = set()
        for node in self._hub.nodes():
            keys.update(node.local_keys())
        return frozenset(keys)

    def health(self) -> BackendHealth:
        """Always connected."""
        return BackendHealth(name="memory", detail={"nodes": len(self._hub)})
