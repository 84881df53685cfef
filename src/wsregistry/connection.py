"""Connection: one registered socket with its bounded outbound queue and writer.

Messages reach the transport in call order. While the queue is empty and the
transport offers ``send_nowait``, a message is written directly; otherwise it is
queued and the registry's writer tasks (see ``_writers``; started on demand,
gone when every queue is empty) drain it with ``await transport.send``. An idle
connection therefore costs no task.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ._encode import encode
from .codes import CloseCode
from .errors import ConnectionClosed
from .limits import OverflowPolicy

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._types import Key, Payload
    from ._writers import Writer
    from .registry import Registry
    from .transport import Transport

__all__ = ["Connection"]

_NO_GROUPS: frozenset[str] = frozenset()

logger = logging.getLogger("wsregistry")


class Connection:
    """One live socket registered under a key.

    Created by :meth:`Registry.connect`; do not instantiate it yourself.

    Attributes:
        id: unique across the cluster (random 128-bit hex).
        key: the key the connection is registered under.
        metadata: the application's data about this connection (a dict you may update).
        connected_at: when it was registered (``time.time()``).
        transport: the transport the registry writes to.
    """

    __slots__ = (
        "__weakref__",
        "_close_code",
        "_closed",
        "_closed_event",
        "_groups",
        "_queue",
        "_queued_bytes",
        "_registry",
        "_send_nowait",
        "_writer",
        "_writing",
        "connected_at",
        "id",
        "key",
        "metadata",
        "transport",
    )

    def __init__(
        self,
        registry: Registry,
        transport: Transport,
        *,
        id: str,
        key: Key,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        self._registry = registry
        self.transport = transport
        self.id = id
        self.key = key
        self.metadata: dict[str, Any] = dict(metadata) if metadata else {}
        self.connected_at = time.time()
        self._groups: set[str] | frozenset[str] = _NO_GROUPS  # a set from the first join
        self._queue: deque[Payload] | None = None  # allocated while frames wait (760 B)
        self._queued_bytes = 0
        self._closed = False
        self._close_code: int | None = None
        self._closed_event: anyio.Event | None = None
        self._writing = False  # on the registry's ready list or in a writer's hands
        self._writer: Writer | None = None  # the writer sending for it right now
        send_nowait = getattr(transport, "send_nowait", None)
        self._send_nowait: Callable[[Payload], bool] | None = (
            send_nowait if callable(send_nowait) else None
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Connection id={self.id} key={self.key!r} {state}>"

    @property
    def groups(self) -> frozenset[str]:
        """The groups this connection belongs to (a snapshot)."""
        return frozenset(self._groups)

    def _add_group(self, group: str) -> bool:
        """Record membership; returns ``False`` if it was already a member."""
        groups = self._groups
        if group in groups:
            return False
        if not isinstance(groups, set):
            groups = self._groups = set()
        groups.add(group)
        return True

    def _remove_group(self, group: str) -> bool:
        """Forget membership; returns ``False`` if it was not a member."""
        groups = self._groups
        if group not in groups or not isinstance(groups, set):
            return False
        groups.discard(group)
        return True

    @property
    def closed(self) -> bool:
        """Whether the connection is no longer registered."""
        return self._closed

    @property
    def close_code(self) -> int | None:
        """The close code the registry used, if the registry closed it."""
        return self._close_code

    @property
    def queued(self) -> int:
        """Messages waiting in this connection's outbound queue."""
        queue = self._queue
        return len(queue) if queue is not None else 0

    @property
    def queued_bytes(self) -> int:
        """Payload bytes waiting in this connection's outbound queue."""
        return self._queued_bytes

    async def send(self, message: Any) -> None:
        """Queue ``message`` for this connection only.

        Serialises like :meth:`Registry.send`; keeps order with every other
        send and broadcast that targets this connection. Does not wait for the
        peer. A checkpoint.

        Raises:
            SerializationError: the message cannot be serialised (nothing queued).
            ConnectionClosed: the connection is no longer registered (also
                after the registry shut down, which closed it: ``code`` 1001).
        """
        await anyio.lowlevel.checkpoint()
        payload = encode(message, self._registry.serializer)
        if self._closed:
            raise ConnectionClosed(self.id, self._close_code)
        self._enqueue(payload)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Unregister the connection and close its socket. Idempotent.

        Messages still queued are discarded (counted as dropped). Waits for the
        transport's close, bounded by the registry's ``close_timeout``; in a
        cancelled scope it unregisters, aborts the transport (if it can) and
        raises the cancellation.
        """
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        self._registry._forget(self, code=code)
        await self._registry._close_transport(self, code, reason)
        await anyio.lowlevel.checkpoint()

    async def wait_closed(self) -> None:
        """Wait until the connection is unregistered (by anyone, for any reason)."""
        if self._closed:
            await anyio.lowlevel.checkpoint()
            return
        if self._closed_event is None:
            self._closed_event = anyio.Event()
        await self._closed_event.wait()

    # -- internals used by the registry ------------------------------------------------

    def _enqueue(self, payload: Payload) -> bool:
        """Hand ``payload`` to the socket or its queue; never blocks.

        Returns ``True`` if the message was written or queued.
        """
        if self._closed:
            return False
        counters = self._registry._counters
        queue = self._queue
        if not self._writing and self._send_nowait is not None:  # nothing waits: try direct
            try:
                written = self._send_nowait(payload)
            except Exception as exc:
                self._registry._transport_failed(self, exc)
                return False
            if written:
                counters.sent += 1
                return True
        size = len(payload)
        if queue is None:
            queue = self._queue = deque()
        elif queue:
            limits = self._registry.limits
            if len(queue) >= limits.max_messages or self._queued_bytes + size > limits.max_bytes:
                policy = limits.overflow
                if policy is OverflowPolicy.CLOSE:
                    self._registry._slow_consumer(self)
                    return False
                if policy is OverflowPolicy.DROP_NEWEST:
                    counters.dropped += 1
                    return False
                while queue and (
                    len(queue) >= limits.max_messages
                    or self._queued_bytes + size > limits.max_bytes
                ):
                    dropped = queue.popleft()
                    self._queued_bytes -= len(dropped)
                    counters.queued -= 1
                    counters.queued_bytes -= len(dropped)
                    counters.dropped += 1
        queue.append(payload)
        self._queued_bytes += size
        counters.queued += 1
        counters.queued_bytes += size
        if not self._writing:
            self._writing = True
            self._registry._writers.schedule(self)
        return True

    def _release(self) -> None:
        """A writer is done with this connection: nothing waits, free the queue."""
        self._writing = False
        self._queue = None

    def _mark_closed(self, code: int | None) -> int:
        """Set the closed state, discard the queue; returns how many were discarded."""
        self._closed = True
        self._close_code = code
        queue = self._queue
        discarded = len(queue) if queue is not None else 0
        if discarded:
            counters = self._registry._counters
            counters.queued -= discarded
            counters.queued_bytes -= self._queued_bytes
            counters.dropped += discarded
            self._queued_bytes = 0
        self._queue = None
        if self._writer is not None:
            self._writer.scope.cancel()  # stop the send in flight
        if self._closed_event is not None:
            self._closed_event.set()
        return discarded
