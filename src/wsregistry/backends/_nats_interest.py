"""The NATS backend's subscriptions: one per subject this node has an interest in.

:meth:`Interest.want` counts a subject's local members; the first one
subscribes and every caller (also a concurrent second one) returns only once
the server has confirmed the subscription (a ``PING``/``PONG`` round trip after
the ``SUB``), or after ``timeout``. :meth:`Interest.unwant` never blocks: the
last member's ``UNSUB`` goes out from a background task.

Order. nats-py runs one task per subscription that pops that subscription's
queue, so two messages one publisher sent in order to two subjects could be
handled out of order. The reader task of nats-py hands each message to its
subscription with a synchronous ``put_nowait`` in arrival order, so each
subscription's queue is replaced by an :class:`_Inbox` whose ``put_nowait``
handles the message at once: every message of the connection is handled in the
order the server sent it, on the reader task, with no per-subscription task.
(This uses nats-py's ``Subscription._pending_queue``; :func:`check_client`
refuses a nats-py without it.)

In a NATS cluster the server we are connected to tells the others about a new
subscription asynchronously (over its routes), so its ``PONG`` does not prove
that a publisher on another server reaches us yet. When a ``barrier`` is
given, :meth:`Interest.want` also waits for it (``_nats_barrier``: every other
live node answers a request sent after the subscription).

A subject unsubscribed and subscribed again quickly may for a moment have two
subscriptions on the server; messages reaching the older one are dropped, so
nothing is handled twice. nats-py replays every live subscription after a
reconnect by itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

logger = logging.getLogger("wsregistry")


class _Inbox:
    """Stands in for a subscription's ``asyncio.Queue``: handles each message at once."""

    __slots__ = ("_handle", "_sub")

    def __init__(self, sub: Subscription, handle: Callable[[Msg], None]) -> None:
        self._sub = sub
        self._handle = handle

    def put_nowait(self, msg: Msg) -> None:
        self._sub._pending_size = 0
        self._handle(msg)

    def empty(self) -> bool:
        return True

    def qsize(self) -> int:
        return 0

    def task_done(self) -> None:
        return None

    async def join(self) -> None:
        return None


def check_client(sub: Subscription) -> None:
    """Raise ``RuntimeError`` if nats-py's subscription lacks what :class:`_Inbox` replaces."""
    queue = getattr(sub, "_pending_queue", None)
    if not isinstance(queue, asyncio.Queue) or not hasattr(sub, "_pending_size"):
        raise RuntimeError(
            "this nats-py version is not supported by wsregistry's NATS backend "
            "(Subscription._pending_queue changed); install a nats-py 2.x it supports"
        )


class _Entry:
    __slots__ = ("count", "ready", "sub", "subject")

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.count = 0
        self.ready = asyncio.Event()
        self.sub: Subscription | None = None


class Interest:
    """The subjects this node subscribes to, with per-subject readiness."""

    def __init__(
        self,
        client: Client,
        *,
        on_message: Callable[[Msg], None],
        on_error: Callable[[BaseException | None, str], None],
        timeout: float,
        barrier: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._barrier = barrier
        self._on_message = on_message
        self._on_error = on_error
        self._timeout = timeout
        self._subs: dict[str, _Entry] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.stale = 0
        """Messages dropped because they reached a subscription being removed."""

    def __len__(self) -> int:
        return len(self._subs)

    async def want(self, subject: str) -> bool:
        """Count one more local member of ``subject``; subscribe on the first.

        Returns once the subscription is confirmed by the server (``True``), or
        ``False`` after ``timeout`` or a failure (already reported); nats-py
        subscribes again after a reconnect.
        """
        entry = self._subs.get(subject)
        if entry is None:
            entry = self._subs[subject] = _Entry(subject)
            self._spawn(self._subscribe(entry))
        entry.count += 1
        try:
            await asyncio.wait_for(entry.ready.wait(), self._timeout)
        except asyncio.TimeoutError:
            self._on_error(None, f"subscribing to {subject[:80]} took over {self._timeout}s")
            return False
        return entry.sub is not None

    def unwant(self, subject: str) -> None:
        """Count one less local member; unsubscribe after the last. Never blocks."""
        entry = self._subs.get(subject)
        if entry is None:
            return
        entry.count -= 1
        if entry.count > 0:
            return
        del self._subs[subject]
        self._spawn(self._unsubscribe(entry))

    async def _subscribe(self, entry: _Entry) -> None:
        client = self._client
        try:
            sub = await client.subscribe(entry.subject, pending_bytes_limit=0)
            check_client(sub)
            queue: asyncio.Queue[Msg] = sub._pending_queue
            sub._pending_queue = _Inbox(sub, lambda msg: self._deliver(entry, msg))  # type: ignore[assignment]
            while not queue.empty():  # anything that arrived before the swap, in order
                self._deliver(entry, queue.get_nowait())
            entry.sub = sub  # if unwanted meanwhile, _unsubscribe waits for ready, then drops it
            if client.is_connected:
                await client.flush(timeout=self._timeout)  # type: ignore[arg-type]
                if self._barrier is not None:
                    await self._barrier()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._on_error(exc, f"subscribing to {entry.subject[:80]} failed")
        finally:
            entry.ready.set()

    async def _unsubscribe(self, entry: _Entry) -> None:
        await entry.ready.wait()
        sub, entry.sub = entry.sub, None
        if sub is None:
            return
        try:
            await sub.unsubscribe()
        except Exception as exc:  # closed or reconnecting: the server drops it with the link
            logger.debug("unsubscribing from %s: %r", entry.subject[:80], exc)

    def _deliver(self, entry: _Entry, msg: Msg) -> None:
        if self._subs.get(entry.subject) is not entry:
            self.stale += 1
            return
        self._on_message(msg)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop background work; the client's close drops the subscriptions."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self._subs.clear()
