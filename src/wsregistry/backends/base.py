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
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._types import Key
    from ..envelope import Envelope
    from ..stats import BackendHealth

__all__ = ["Backend", "LocalNode"]


class LocalNode(Protocol):
    """What a registry offers its backend: delivery and a view of local state."""

    @property
    def node_id(self) -> str:
        """This node's id, unique across the cluster."""
        ...

    def deliver(self, envelope: Envelope) -> int:
        """Enqueue a remote envelope to local connections; returns how many. Never blocks."""
        ...

    def local_presence(self) -> Iterable[tuple[str, Key]]:
        """A snapshot of this node's live connections as ``(connection id, key)`` pairs.

        For re-asserting presence after a broker outage.
        """
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

    @property
    def reaches_other_nodes(self) -> bool:
        """Whether a publish may reach another node right now (non-blocking).

        The registry skips building an :class:`~wsregistry.Envelope` and calling
        :meth:`publish` while this is ``False``; a backend that cannot tell
        cheaply keeps the default, ``True``.
        """
        return True

    @abc.abstractmethod
    async def start(self, node: LocalNode) -> None:
        """Start serving ``node``. Called each time the registry starts.

        A registry can be entered again after a clean exit, so a backend is
        started again after :meth:`aclose`; each run begins from a clean state.

        Raises:
            BackendUnavailable: the broker cannot be reached at start-up.
        """

    async def flush(self) -> None:  # noqa: B027 - an optional hook; the default has no buffer
        """Wait until everything published so far has been handed to the broker.

        Called when the registry shuts down, before its connections close, and
        bounded by the registry's ``drain_timeout`` (the call is cancelled at the
        deadline: whatever is still unpublished then must be counted as dropped
        in :meth:`health`). The default returns at once (nothing is buffered).
        """

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Stop, remove this node's presence, and release resources. Idempotent.

        Called after :meth:`flush`, bounded by the registry's ``close_timeout``:
        the call may be cancelled at the deadline and must still release every
        resource and task (use ``finally``); the registry's shutdown never waits
        longer than ``drain_timeout + close_timeout`` in all.
        """

    @abc.abstractmethod
    async def publish(self, envelope: Envelope) -> None:
        """Send ``envelope`` to every other node that may hold a target.

        Raises:
            BackendUnavailable: the message could not be handed to the broker.
        """

    @abc.abstractmethod
    async def connection_added(self, connection_id: str, key: Key, *, first_of_key: bool) -> None:
        """Connection ``connection_id`` of ``key`` was registered here.

        Return only once traffic for ``key`` reaches this node and the
        connection counts in presence, cluster-wide. ``first_of_key`` is a
        hint: a concurrent call for the same key (``first_of_key=False``) must
        also wait until the key is reachable.
        """

    @abc.abstractmethod
    def connection_removed(self, connection_id: str, key: Key, *, last_of_key: bool) -> None:
        """Connection ``connection_id`` of ``key`` was unregistered here. Must not block."""

    @abc.abstractmethod
    async def group_joined(self, group: str, *, first_of_group: bool) -> None:
        """A local connection joined ``group``.

        Return only once group traffic reaches this node (also when
        ``first_of_group`` is ``False`` and another join is still subscribing).
        """

    @abc.abstractmethod
    def group_left(self, group: str, *, last_of_group: bool) -> None:
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
