"""The Backend protocol: how a registry talks to other processes.

A backend carries messages between registries (processes, machines) and keeps
cluster-wide presence. The registry delivers to its own connections itself and
asks the backend to reach everyone else:

* :meth:`Backend.publish` sends an :class:`Envelope` to the *other* nodes; the
  backend must never hand a node its own envelopes back.
* Remote envelopes are handed to :meth:`LocalNode.deliver`, which enqueues them
  to this node's connections (synchronously, never blocking).
* The registry reports membership changes: :meth:`Backend.connection_added` and
  :meth:`Backend.group_joined` are awaited (after they return, the connection
  is reachable and present cluster-wide); :meth:`Backend.connection_removed`
  and :meth:`Backend.group_left` must not block (they run on cleanup paths) and
  may finish their work in the background.

Hooks must not raise for broker failures: record them (see :meth:`Backend.health`)
and recover. :meth:`Backend.publish` may raise :class:`~wsregistry.errors.BackendUnavailable`.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._types import Key, Payload
    from ..connection import Connection
    from ..stats import BackendHealth

__all__ = ["Backend", "Envelope", "EnvelopeKind", "LocalNode"]


class EnvelopeKind(str, enum.Enum):
    """Who an :class:`Envelope` is for."""

    KEY = "key"
    """Every connection of ``target`` (a key)."""
    BROADCAST = "broadcast"
    """Every connection."""
    GROUP = "group"
    """Every member of ``target`` (a group name)."""
    CONNECTION = "connection"
    """The one connection whose id is ``target``."""


@dataclass(frozen=True)
class Envelope:
    """One encoded message on its way to other nodes.

    Attributes:
        kind: who the message is for.
        payload: the encoded frame (text for ``str``, binary for ``bytes``).
        target: the key, group name or connection id (``None`` for broadcast).
        exclude: a connection id that must not receive it.
        origin: the node id of the publisher.
    """

    kind: EnvelopeKind
    payload: Payload
    target: Key | None = None
    exclude: str | None = None
    origin: str = ""


class LocalNode(Protocol):
    """What a registry offers its backend: delivery and a view of local state."""

    @property
    def node_id(self) -> str:
        """This node's id, unique across the cluster."""
        ...

    def deliver(self, envelope: Envelope) -> int:
        """Enqueue a remote envelope to local connections; returns how many. Never blocks."""
        ...

    def local_connections(self) -> Iterable[Connection]:
        """A snapshot of this node's live connections (for re-asserting presence)."""
        ...

    def local_keys(self) -> Iterable[Key]:
        """Keys with a live connection on this node (for resubscribing)."""
        ...

    def local_groups(self) -> Iterable[str]:
        """Groups with a member on this node (for resubscribing)."""
        ...

    def local_count(self, key: Key) -> int:
        """How many connections ``key`` holds on this node."""
        ...

    def backend_error(self) -> None:
        """Count one backend error in the registry's stats."""
        ...


class Backend(abc.ABC):
    """Base class of backends. Subclass it to connect registries through a broker."""

    @abc.abstractmethod
    async def start(self, node: LocalNode) -> None:
        """Start serving ``node``. Called once when the registry starts.

        Raises:
            BackendUnavailable: the broker cannot be reached at start-up.
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop, remove this node's presence, and release resources. Idempotent."""

    @abc.abstractmethod
    async def publish(self, envelope: Envelope) -> None:
        """Send ``envelope`` to every other node that may hold a target.

        Raises:
            BackendUnavailable: the message could not be handed to the broker.
        """

    @abc.abstractmethod
    async def connection_added(self, conn: Connection, *, first_of_key: bool) -> None:
        """A connection was registered here; make it reachable and present."""

    @abc.abstractmethod
    def connection_removed(self, conn: Connection, *, last_of_key: bool) -> None:
        """A connection was unregistered here. Must not block."""

    @abc.abstractmethod
    async def group_joined(self, conn: Connection, group: str, *, first_of_group: bool) -> None:
        """A local connection joined ``group``; make group traffic reach this node."""

    @abc.abstractmethod
    def group_left(self, conn: Connection, group: str, *, last_of_group: bool) -> None:
        """A local connection left ``group``. Must not block."""

    @abc.abstractmethod
    async def presence_count(self, key: Key) -> int:
        """Live connections of ``key`` across the cluster."""

    @abc.abstractmethod
    async def online_keys(self) -> frozenset[Key]:
        """Every key with a live connection across the cluster."""

    @abc.abstractmethod
    def health(self) -> BackendHealth:
        """The backend's current state (non-blocking)."""
