"""One run of the Redis backend (``start`` to ``aclose``): the parts, wired together.

:class:`Run` owns everything a run creates: the connection pool, the presence
bookkeeping, the writer, the leases, the listener, the probe and their tasks.
A backend creates a new one at each start, so a restarted backend begins from a
clean state; :meth:`Run.release` stops and closes everything, bounded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from . import _redis_wire as wire
from ._redis_health import Backoff, Counters, supervise
from ._redis_listener import Listener
from ._redis_outbox import Publisher
from ._redis_presence import Leases, Presence
from ._redis_probe import Probe, Receiver

if TYPE_CHECKING:
    from .base import LocalNode
    from .redis import RedisBackend

logger = logging.getLogger("wsregistry")

CLEANUP = 0.1
"""Seconds each (shielded) step of releasing tasks and sockets may take at most."""


class Run:
    """Everything one run (``start`` to ``aclose``) of a backend owns: wires the parts."""

    def __init__(self, backend: RedisBackend, node: LocalNode) -> None:
        self.backend = backend
        self.node = node
        self.counters = Counters()
        self.origin = node.node_id.encode("utf-8")
        self.me = wire.name_of(node.node_id)
        self.up = asyncio.Event()
        self.flush_cut_short = False
        self.tasks: list[asyncio.Task[None]] = []
        self._link_seen = False
        layout = backend._layout
        self.pool = aioredis.ConnectionPool.from_url(
            backend.url,
            protocol=2,  # RESP2 keeps pub/sub replies plain arrays on every server version
            retry=Retry(NoBackoff(), 0),  # never retry: a retried publish could deliver twice
            socket_timeout=backend.socket_timeout,
            socket_connect_timeout=backend.op_timeout,
        )
        self.client = aioredis.Redis(connection_pool=self.pool)
        self.presence = Presence(
            node, layout, self.me, lease_ms=int(backend.presence_timeout * 1000)
        )
        self.publisher = Publisher(
            self.client,
            self.presence,
            self.counters,
            linger=backend.publish_linger,
            max_pending=backend.max_pending,
            backoff=Backoff(*backend.reconnect_backoff),
            on_state=backend._notify_state,
            on_error=node.backend_error,
        )
        self.leases = Leases(
            self.client,
            self.presence,
            self.counters,
            heartbeat_interval=backend.heartbeat_interval,
            op_timeout=backend.op_timeout,
            on_failure=self.publisher.failed,
            wake_writer=self.publisher.wake,
        )
        self.receiver = Receiver(node, self.counters)
        self.listener = Listener(
            self.pool,
            on_message=self.receiver,
            on_state=self._on_link,
            backoff=Backoff(*backend.reconnect_backoff),
        )
        own = layout.node_channel(self.me)
        self.listener.wanted.update((layout.all, own))
        self.probe = Probe(
            self.client,
            self.listener,
            self.counters,
            channel=own,
            origin=self.origin,
            interval=backend.probe_interval,
            timeout=backend.probe_timeout,
        )
        self.receiver.probe = self.probe

    @property
    def connected(self) -> bool:
        """Whether publishes and subscriptions reach Redis."""
        return self.publisher.ok and self.listener.up and not self.publisher.closing

    def link_detail(self) -> dict[str, Any]:
        return {
            "subscriptions": self.listener.subscriptions,
            "link_failures": self.listener.failures,
            "pending": self.publisher.pending,
        }

    def spawn_tasks(self) -> None:
        backoff = self.backend.reconnect_backoff
        for name, loop in (
            ("listener", self.listener.run),
            ("writer", self.publisher.run),
            ("heartbeat", self.leases.heartbeat_loop),
            ("reaper", self.leases.reaper_loop),
            ("probe", self.probe.run),
        ):
            task = asyncio.ensure_future(supervise(name, loop, self.counters, Backoff(*backoff)))
            self.tasks.append(task)

    async def settle(self, channel: str, *, presence: bool) -> None:
        """Wait (``op_timeout`` at most) until ``channel`` is ready and presence is written."""
        listener, publisher = self.listener, self.publisher
        if presence:
            publisher.wake()
        if not self.connected:
            await asyncio.sleep(0)  # a checkpoint; everything is rewritten after reconnecting
            return
        ready = listener.is_ready(channel)
        if ready and not presence:
            return
        mark = publisher.mark() if presence else None
        with anyio.move_on_after(self.backend.op_timeout) as scope:
            if not ready:
                await listener.wait_ready(channel)
            if mark is not None:
                await mark.done
        if scope.cancelled_caught:
            self.counters.error(None, "membership change not confirmed within op_timeout")

    def _on_link(self, up: bool, error: BaseException | None) -> None:
        if up:
            if self._link_seen:
                self.counters.reconnects += 1
                self.presence.request_resync()  # presence may have expired or Redis restarted
                self.publisher.wake()
            self._link_seen = True
            self.up.set()
        elif not self.publisher.closing:
            self.counters.error(error)
            self.node.backend_error()
            logger.warning("redis subscription link lost: %r", error)
        self.backend._notify_state()

    async def release(self) -> None:
        """Stop every task, count what was not published, close every socket (bounded)."""
        self.publisher.closing = True
        self.listener.stop()
        for task in self.tasks:
            task.cancel()
        with anyio.move_on_after(CLEANUP):
            if self.tasks:
                await asyncio.wait(self.tasks)
        stuck = [task for task in self.tasks if not task.done()]
        if stuck:
            self.counters.error(None, f"{len(stuck)} tasks did not stop")
            logger.error("%d redis backend tasks did not stop in time", len(stuck))
        lost = self.publisher.drop_all()
        if lost:
            self.node.backend_error()
            logger.warning("redis backend closed with %d publishes not confirmed (lost)", lost)
        with anyio.move_on_after(CLEANUP):
            await self.pool.disconnect(inuse_connections=True)
        with anyio.move_on_after(CLEANUP):
            await self.client.aclose(close_connection_pool=True)
