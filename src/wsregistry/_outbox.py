"""Outbox: the registry's record of one connection, as pure bookkeeping.

Sans-I/O, in the manner of websockets' ``protocol.py``: an ``Outbox`` holds a
connection's identity, its one explicit state, its groups and its bounded
outbound queue, and *returns* what the I/O layer must do (``Offer``); it never
awaits, never touches the transport and never calls back into the registry.
The registry's run (``_run``) and the writer tasks (``_writers``) act on the
outcomes; the public :class:`~wsregistry.Connection` is a handle on an outbox.

Queue accounting is in bytes on the wire: a text payload counts its UTF-8
length, not its number of characters. Totals over every outbox of a run live in
one shared ``Counters`` object that each outbox updates in place.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING

from .limits import OverflowPolicy

if TYPE_CHECKING:
    from ._counters import Counters
    from ._types import Key, Payload
    from .connection import Connection
    from .limits import QueueLimits
    from .transport import Transport

__all__ = ["ConnectionState", "Offer", "Outbox", "wire_size"]

_NO_GROUPS: frozenset[str] = frozenset()


class ConnectionState(enum.Enum):
    """Where a :class:`~wsregistry.Connection` is in its life."""

    OPEN = "open"
    """Registered: sends, broadcasts and ``conn.send`` reach it."""
    CLOSING = "closing"
    """Unregistered; what was queued before is still being written, then the socket closes."""
    CLOSED = "closed"
    """Unregistered; nothing more is written to it."""


class Offer(enum.Enum):
    """What became of a payload offered to an outbox, and what the caller must do."""

    QUEUED = "queued"
    """Queued behind frames a writer is already sending."""
    SCHEDULE = "schedule"
    """Queued in an idle outbox: hand the outbox to a writer."""
    DROPPED = "dropped"
    """Not queued: the outbox is not open, or the drop-newest policy applied."""
    OVERFLOW = "overflow"
    """Not queued: the queue is full and the policy is to close the connection."""


def wire_size(payload: Payload) -> int:
    """Bytes ``payload`` takes in a frame (UTF-8 for text)."""
    if type(payload) is bytes or payload.isascii():
        return len(payload)
    return len(payload.encode())  # type: ignore[union-attr]


class Outbox:
    """One connection: identity, state, groups and bounded outbound queue.

    Attributes:
        id: the connection id (never changes).
        key: the key the connection is registered under (never changes).
        connection: the public handle users hold.
        transport: what the I/O layer writes to (never called here).
        direct: whether the transport offers ``send_nowait``.
        state: the one state of the connection.
        close_code: the close code the registry used, if it closed it.
        groups: the groups it belongs to (a set from the first join).
        queue: frames waiting to be written (allocated while frames wait).
        queued_bytes: UTF-8 bytes waiting in ``queue``.
        scheduled: whether a writer owns the outbox (on the ready list or sending).
    """

    __slots__ = (
        "close_code",
        "connection",
        "counters",
        "direct",
        "groups",
        "id",
        "key",
        "limits",
        "queue",
        "queued_bytes",
        "scheduled",
        "state",
        "transport",
    )

    def __init__(
        self,
        *,
        id: str,
        key: Key,
        transport: Transport,
        limits: QueueLimits,
        counters: Counters,
    ) -> None:
        self.id = id
        self.key = key
        self.transport = transport
        self.direct = callable(getattr(transport, "send_nowait", None))
        self.limits = limits
        self.counters = counters
        self.connection: Connection | None = None
        self.state = ConnectionState.OPEN
        self.close_code: int | None = None
        self.groups: set[str] | frozenset[str] = _NO_GROUPS
        self.queue: deque[Payload] | None = None
        self.queued_bytes = 0
        self.scheduled = False

    def __repr__(self) -> str:
        return f"<Outbox id={self.id} key={self.key!r} {self.state.value}>"

    @property
    def writable_now(self) -> bool:
        """Whether a payload may skip the queue: open, direct, and nothing waits."""
        return self.direct and not self.scheduled and self.state is ConnectionState.OPEN

    # -- membership --------------------------------------------------------------------

    def add_group(self, group: str) -> bool:
        """Record membership; ``False`` if it was already a member."""
        groups = self.groups
        if group in groups:
            return False
        if not isinstance(groups, set):
            groups = self.groups = set()
        groups.add(group)
        return True

    def remove_group(self, group: str) -> bool:
        """Forget membership; ``False`` if it was not a member."""
        groups = self.groups
        if group not in groups or not isinstance(groups, set):
            return False
        groups.discard(group)
        return True

    # -- the queue ---------------------------------------------------------------------

    def offer(self, payload: Payload) -> Offer:
        """Queue ``payload`` under the limits and the overflow policy."""
        if self.state is not ConnectionState.OPEN:
            return Offer.DROPPED
        counters = self.counters
        size = wire_size(payload)
        queue = self.queue
        if queue is None:
            queue = self.queue = deque()
        elif queue:  # a message always fits an empty queue
            limits = self.limits
            if len(queue) >= limits.max_messages or self.queued_bytes + size > limits.max_bytes:
                counters.overflows += 1
                policy = limits.overflow
                if policy is OverflowPolicy.CLOSE:
                    counters.dropped += 1
                    return Offer.OVERFLOW
                if policy is OverflowPolicy.DROP_NEWEST:
                    counters.dropped += 1
                    return Offer.DROPPED
                while queue and (
                    len(queue) >= limits.max_messages or self.queued_bytes + size > limits.max_bytes
                ):
                    self._account(-1, -wire_size(queue.popleft()))
                    counters.dropped += 1
        queue.append(payload)
        self._account(1, size)
        if self.scheduled:
            return Offer.QUEUED
        self.scheduled = True
        return Offer.SCHEDULE

    def take(self) -> Payload | None:
        """The next frame for a writer, or ``None`` when there is none to write."""
        queue = self.queue
        if not queue or self.state is ConnectionState.CLOSED:
            return None
        payload = queue.popleft()
        self._account(-1, -wire_size(payload))
        return payload

    def release(self) -> None:
        """A writer is done with the outbox; free the queue if it is empty."""
        self.scheduled = False
        if not self.queue:
            self.queue = None

    @property
    def idle(self) -> bool:
        """Whether nothing waits to be written and no writer holds the outbox."""
        return not self.scheduled and not self.queue

    # -- state -------------------------------------------------------------------------

    def unregister(self, code: int | None, *, flush: bool) -> bool:
        """Leave OPEN: CLOSING to write what is queued first (``flush``), else CLOSED.

        Returns ``False`` if it had already left OPEN.
        """
        if self.state is not ConnectionState.OPEN:
            return False
        self.close_code = code
        if flush and (self.queue or self.scheduled):  # frames wait, or one is in flight
            self.state = ConnectionState.CLOSING
        else:
            self.finish()
        return True

    def finish(self) -> int:
        """Become CLOSED and discard what is still queued; returns how many were discarded."""
        self.state = ConnectionState.CLOSED
        queue = self.queue
        discarded = len(queue) if queue else 0
        if discarded:
            self.counters.dropped += discarded
            self.counters.dropped_closed += discarded
            self._account(-discarded, -self.queued_bytes)
        self.queue = None
        return discarded

    def _account(self, messages: int, size: int) -> None:
        self.queued_bytes += size
        counters = self.counters
        counters.queued += messages
        counters.queued_bytes += size
