"""The Redis backend's subscription link: one dedicated pub/sub connection.

The link keeps the server's subscriptions equal to :attr:`Listener.wanted`
(changed through :meth:`Listener.want` and :meth:`Listener.unwant`, which never
block). A single sync task turns the changes into one write of ``SUBSCRIBE`` /
``UNSUBSCRIBE`` commands followed by ``PING <token>``; the pong of the first
PING on a fresh connection marks the link up.

Readiness is tracked **per channel**: Redis answers every channel of a
``SUBSCRIBE``/``UNSUBSCRIBE`` with its own reply, in order. A channel is
*ready* when it is wanted, its last command was a ``SUBSCRIBE`` and every
command sent for it has been answered. :meth:`Listener.wait_ready` waits for
exactly that, whoever asked for the channel first: a second connect of a key
waits for the first one's ``SUBSCRIBE`` too, and an ``UNSUBSCRIBE`` in flight
is never mistaken for readiness. This is how "after ``connection_added`` /
``group_joined`` returns, the node is reachable" is kept.

Any read or write error, or :meth:`Listener.rebuild` (the liveness probe found
the link deaf), drops the connection: every channel stops being ready and
waiters return ``False`` (while the link is down, membership calls do not
wait). :meth:`Listener.run` then reconnects with jittered exponential backoff
and subscribes to everything in ``wanted`` again. Only one connection exists
at a time, so no message is delivered twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ._redis_health import Backoff

if TYPE_CHECKING:
    from redis.asyncio.connection import AbstractConnection, ConnectionPool

logger = logging.getLogger("wsregistry")

_CHUNK = 512  # channels per SUBSCRIBE/UNSUBSCRIBE command


class LinkLost(Exception):
    """The link was dropped on purpose (rebuild) or by the server."""


class Listener:
    """Subscriptions of one node, kept alive across failures.

    Args:
        pool: where the dedicated connection comes from (``make_connection``).
        on_message: called with the data of every published message (sync).
        on_state: called with ``True`` when the link is subscribed to everything,
            ``False`` when it is lost.
        backoff: the reconnect delays.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        *,
        on_message: Callable[[bytes], None],
        on_state: Callable[[bool, BaseException | None], None],
        backoff: Backoff,
    ) -> None:
        self.wanted: set[str] = set()
        self.up = False
        self.messages = 0
        self.reads = 0  # every reply read: progress, for the liveness probe
        self.failures = 0
        self._pool = pool
        self._on_message = on_message
        self._on_state = on_state
        self._backoff = backoff
        self._conn: AbstractConnection | None = None
        self._active: set[str] = set()  # last command sent per channel was SUBSCRIBE
        self._unanswered: dict[str, int] = {}  # (UN)SUBSCRIBE commands awaiting replies
        self._ready: set[str] = set()  # active and answered: traffic reaches us
        self._ready_waiters: dict[str, list[asyncio.Future[bool]]] = {}
        self._touched: set[str] = set()  # channels changed since the last sync
        self._dirty = asyncio.Event()
        self._pings: set[bytes] = set()  # PING tokens sent on this link, pong not yet read
        self._tokens = itertools.count()
        self._lost: asyncio.Future[None] | None = None
        self._stopped = False

    @property
    def subscriptions(self) -> int:
        """Channels the server has confirmed or been asked for on the current link."""
        return len(self._active)

    def want(self, channel: str) -> None:
        """Subscribe to ``channel`` soon (never blocks; idempotent)."""
        if channel in self.wanted:
            return
        self.wanted.add(channel)
        self._touched.add(channel)
        self._dirty.set()

    def unwant(self, channel: str) -> None:
        """Unsubscribe from ``channel`` soon (never blocks; idempotent).

        Whoever waits for the channel to be ready gets ``False``.
        """
        if channel not in self.wanted:
            return
        self.wanted.discard(channel)
        self._touched.add(channel)
        self._dirty.set()
        self._resolve(channel, False)

    def is_ready(self, channel: str) -> bool:
        """Whether traffic on ``channel`` reaches this node now (non-blocking)."""
        return self.up and channel in self._ready

    async def wait_ready(self, channel: str) -> bool:
        """Wait until ``channel`` is ready; ``False`` if the link goes down or it is unwanted.

        Not bounded by itself: callers bound it (``op_timeout``, cancellation).
        """
        if channel in self._ready:
            return self.up
        if not self.up or channel not in self.wanted:
            return False
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiters = self._ready_waiters.setdefault(channel, [])
        waiters.append(future)
        try:
            return await future
        finally:
            if not future.done():
                future.cancel()
            if future in waiters:
                waiters.remove(future)
            if not waiters and self._ready_waiters.get(channel) is waiters:
                del self._ready_waiters[channel]

    def _resolve(self, channel: str, ready: bool) -> None:
        for future in self._ready_waiters.pop(channel, ()):
            if not future.done():
                future.set_result(ready)

    def _answered(self, channel: str, *, subscribed: bool) -> None:
        """A (UN)SUBSCRIBE reply for ``channel`` arrived (replies come in command order)."""
        count = self._unanswered.get(channel, 0)
        if not count:  # not ours (e.g. the server dropped it): not ready any more
            if not subscribed:
                self._ready.discard(channel)
            return
        left = count - 1
        if left > 0:
            self._unanswered[channel] = left
            return
        self._unanswered.pop(channel, None)
        if channel in self._active:
            self._ready.add(channel)
            self._resolve(channel, True)

    def stop(self) -> None:
        """Make :meth:`run` return (with the cancellation of its task). Never blocks."""
        self._stopped = True
        self._dirty.set()
        self.rebuild("stopped")

    def rebuild(self, reason: str) -> None:
        """Drop the current connection (the loop reconnects). Never blocks."""
        lost = self._lost
        if lost is not None and not lost.done():
            lost.set_exception(LinkLost(reason))

    async def run(self) -> None:
        """Keep a link up until cancelled or stopped."""
        while not self._stopped:
            error: BaseException | None = None
            try:
                await self._serve()
            except (RedisError, OSError, asyncio.TimeoutError, LinkLost) as exc:
                error = exc
            except Exception as exc:  # a bug: say so loudly, then recover like any failure
                logger.exception("pub/sub link failed unexpectedly")
                error = exc
            finally:
                if error is not None and not self._stopped:
                    self.failures += 1
                await self._drop()
                self._set_up(False, error)
            if self._stopped:
                return
            delay = self._backoff.next_delay()
            logger.debug("pub/sub link lost (%r); reconnecting in %.2fs", error, delay)
            await asyncio.sleep(delay)

    async def _serve(self) -> None:
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        self._conn = conn
        self._active = set()
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        await conn.connect()  # type: ignore[no-untyped-call]
        reader = asyncio.ensure_future(self._read(conn))
        writer = asyncio.ensure_future(self._write(conn))
        try:
            # The first PING after connecting marks the link up (see _dispatch).
            done, _ = await asyncio.wait(
                (reader, writer, self._lost), return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                task.result()  # raises the reason
            raise LinkLost("link task ended")
        finally:
            for task in (reader, writer):
                task.cancel()
            # Closing the socket also ends a read that swallowed its cancellation.
            await conn.disconnect(nowait=True)
            await asyncio.gather(reader, writer, return_exceptions=True)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        lost, self._lost = self._lost, None
        if lost is not None and not lost.done():
            lost.cancel()
        elif lost is not None and not lost.cancelled():
            lost.exception()  # retrieved: no "never retrieved" warning
        self._active = set()
        self._unanswered.clear()
        self._ready.clear()
        for channel in list(self._ready_waiters):
            self._resolve(channel, False)
        self._pings.clear()
        if conn is not None:
            try:
                await conn.disconnect(nowait=True)
            except Exception as exc:  # pragma: no cover - best effort
                logger.debug("closing pub/sub connection raised %r", exc)

    def _set_up(self, up: bool, error: BaseException | None) -> None:
        if up is self.up:
            return
        self.up = up
        if up:
            self._backoff.reset()
        self._on_state(up, error)

    async def _write(self, conn: AbstractConnection) -> None:
        self._dirty.set()  # subscribe to everything on a fresh link
        fresh = True
        while not self._stopped:
            await self._dirty.wait()
            self._dirty.clear()
            wanted, active = self.wanted, self._active
            touched, self._touched = self._touched, set()
            if fresh:  # a new connection: everything
                fresh = False
                add, remove = list(wanted), []
                active.update(add)
            else:  # what changed: O(changes), not O(subscriptions)
                add = [ch for ch in touched if ch in wanted and ch not in active]
                remove = [ch for ch in touched if ch not in wanted and ch in active]
                active.update(add)
                active.difference_update(remove)
            token = b"wsr-%d" % next(self._tokens)
            self._pings.add(token)
            unanswered = self._unanswered
            for channel in (*add, *remove):
                unanswered[channel] = unanswered.get(channel, 0) + 1
                self._ready.discard(channel)
            commands: list[tuple[Any, ...]] = []
            for name, channels in (("SUBSCRIBE", add), ("UNSUBSCRIBE", remove)):
                for start in range(0, len(channels), _CHUNK):
                    commands.append((name, *channels[start : start + _CHUNK]))
            commands.append(("PING", token))
            await conn.send_packed_command(conn.pack_commands(commands), check_health=False)

    async def _read(self, conn: AbstractConnection) -> None:
        on_message = self._on_message
        while not self._stopped:
            response = await conn.read_response(
                timeout=math.inf, disconnect_on_error=False, push_request=True
            )
            self.reads += 1
            if not isinstance(response, list) or not response:
                continue
            kind = response[0]
            if kind == b"message":
                self.messages += 1
                on_message(response[2])
            elif kind == b"subscribe" or kind == b"unsubscribe":
                channel = response[1]
                name = channel.decode("latin-1") if isinstance(channel, bytes) else str(channel)
                self._answered(name, subscribed=kind == b"subscribe")
            elif kind == b"pong":
                token = response[1]
                if token in self._pings:
                    self._pings.discard(token)
                    self._set_up(True, None)  # everything sent before it is applied
