"""The Redis backend's presence: what this node has written, and its lease.

:class:`Presence` is bookkeeping only (no I/O): the connections this node
announced, and which keys/connections changed since the writer last wrote them
(a set, so a key that changes 1000 times while Redis is slow is written once).
The writer (``_redis_outbox``) asks it for commands: :meth:`Presence.write_into`
for the changes, :meth:`Presence.resync_into` for a full rewrite (after start, a
reconnect, a lost lease or a failed write). A rewrite is *requested* by bumping a
generation and *done* only when the pipeline that carried it succeeded, so a
failed rewrite is never mistaken for a done one.

:class:`Leases` does the I/O of presence: the heartbeat (one round trip at a fixed
rate, so a slow link stretches the period to one round trip, not to interval +
round trips), the reaper (crashed nodes are purged in bounded steps of
``REAP_BUDGET`` entries, so one step never blocks Redis for long), the queries,
and leaving at shutdown (this node's lease is expired at once, so readers stop
counting it in one command, then its entries are purged in the same bounded steps).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from redis.exceptions import RedisError

from ..errors import BackendUnavailable
from . import _redis_wire as wire

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from .._types import Key
    from ._redis_health import Counters
    from .base import LocalNode

logger = logging.getLogger("wsregistry")

BROKEN = (RedisError, OSError, asyncio.TimeoutError)
"""What a failed Redis command raises."""

REAP_STEPS = 64
"""Most reaper steps per heartbeat (64 x 256 entries), each a separate short script."""


class Presence:
    """This node's presence as written to Redis, and what still has to be written."""

    def __init__(self, node: LocalNode, layout: wire.Layout, me: str, *, lease_ms: int) -> None:
        self.node = node
        self.layout = layout
        self.me = me
        self.lease_ms = lease_ms
        self.conns: dict[str, Key] = {}
        self._keys: set[Key] = set()
        self._ids: set[str] = set()
        self._wanted = 1  # a fresh run rewrites everything once
        self._done = 0

    @property
    def dirty(self) -> bool:
        """Whether changes wait to be written."""
        return bool(self._keys or self._ids)

    @property
    def needs_resync(self) -> bool:
        """Whether a full rewrite was requested and has not succeeded since."""
        return self._wanted > self._done

    def request_resync(self) -> None:
        """Ask for a full rewrite (the writer does it before anything else)."""
        self._wanted += 1

    def added(self, connection_id: str, key: Key) -> None:
        """A connection of ``key`` was registered here."""
        self.conns[connection_id] = key
        self._keys.add(key)
        self._ids.add(connection_id)

    def removed(self, connection_id: str, key: Key) -> None:
        """A connection of ``key`` was unregistered here."""
        self.conns.pop(connection_id, None)
        self._keys.add(key)
        self._ids.add(connection_id)

    def write_into(self, pipe: Any) -> None:
        """Add the commands that write every pending change to ``pipe``.

        Raises:
            Exception: the node's ``local_count`` failed; a full rewrite is
                requested (nothing is lost), the caller logs and counts it.
        """
        keys, self._keys = self._keys, set()
        ids, self._ids = self._ids, set()
        layout, me, node = self.layout, self.me, self.node
        try:
            for key in keys:
                name = wire.name_of(key)
                presence = layout.presence_key(name)
                count = node.local_count(key)
                if count:
                    pipe.hset(presence, me, count)
                    pipe.hset(layout.node_keys(me), name, presence)
                else:
                    pipe.hdel(presence, me)
                    pipe.hdel(layout.node_keys(me), name)
        except Exception:
            self.request_resync()
            raise
        for connection_id in ids:
            if connection_id in self.conns:
                pipe.hset(layout.conns, connection_id, me)
                pipe.sadd(layout.node_conns(me), connection_id)
            else:
                pipe.hdel(layout.conns, connection_id)
                pipe.srem(layout.node_conns(me), connection_id)

    def resync_into(self, pipe: Any) -> int:
        """Add a full rewrite (purge, lease, every key and connection) to ``pipe``.

        Returns the generation to pass to :meth:`resync_done` once ``pipe`` succeeded.
        """
        generation = self._wanted
        self._keys.clear()  # the snapshot below covers every change so far
        self._ids.clear()
        layout, me, node = self.layout, self.me, self.node
        pipe.eval(wire.PURGE_NODE, 2, layout.nodes, layout.conns, layout.prefix, me, "0")
        pipe.eval(wire.HEARTBEAT, 1, layout.nodes, me, self.lease_ms)
        names: dict[str, str] = {}
        for key in node.local_keys():
            name = wire.name_of(key)
            presence = layout.presence_key(name)
            names[name] = presence
            pipe.hset(presence, me, node.local_count(key))
        if names:
            pipe.hset(layout.node_keys(me), mapping=names)
        if self.conns:
            pipe.hset(layout.conns, mapping=dict.fromkeys(self.conns, me))
            pipe.sadd(layout.node_conns(me), *self.conns)
        return generation

    def resync_done(self, generation: int) -> None:
        """The rewrite of ``generation`` reached Redis."""
        self._done = max(self._done, generation)


class Leases:
    """The I/O of presence: heartbeat, reaper, queries, leaving.

    Args:
        client: the command client.
        presence: this node's bookkeeping.
        counters: where to count.
        heartbeat_interval: seconds between lease renewals (fixed rate).
        op_timeout: bound of each command.
        on_failure: called when a heartbeat failed (the writer rejects publishes
            and rewrites presence once Redis answers again).
        wake_writer: called when a rewrite was requested.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        presence: Presence,
        counters: Counters,
        *,
        heartbeat_interval: float,
        op_timeout: float,
        on_failure: Callable[[BaseException], None],
        wake_writer: Callable[[], None],
    ) -> None:
        self.client = client
        self.presence = presence
        self.counters = counters
        self.heartbeat_interval = heartbeat_interval
        self.op_timeout = op_timeout
        self._on_failure = on_failure
        self._wake_writer = wake_writer

    async def heartbeat_loop(self) -> None:
        """Renew the lease every ``heartbeat_interval`` (fixed rate, one round trip each)."""
        presence, layout = self.presence, self.presence.layout
        loop = asyncio.get_running_loop()
        due = loop.time() + self.heartbeat_interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + self.heartbeat_interval, loop.time())
            if presence.needs_resync:
                continue  # the rewrite renews the lease
            try:
                with anyio.fail_after(self.op_timeout):
                    alive = await self.client.eval(
                        wire.HEARTBEAT, 1, layout.nodes, presence.me, presence.lease_ms
                    )
            except (*BROKEN, TimeoutError) as exc:
                self._on_failure(exc)
                continue
            if not alive:
                self.counters.lease_lost += 1
                logger.warning("node %s lost its presence lease; re-asserting", presence.me)
                presence.request_resync()
                self._wake_writer()

    async def reaper_loop(self) -> None:
        """Purge crashed nodes' presence, in bounded steps, every ``heartbeat_interval``."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.reap()
            except (*BROKEN, TimeoutError) as exc:
                self.counters.error(exc)
                logger.info("reaping crashed nodes failed: %r", exc)

    async def reap(self, node: str = "", *, steps: int = REAP_STEPS) -> None:
        """Run reaper steps (of ``node``, or of any dead node) until done or ``steps`` ran."""
        args = wire.reap_args(self.presence.layout, node=node)
        for _ in range(steps):
            with anyio.fail_after(self.op_timeout):
                work = int(await self.client.eval(wire.REAP, *args))
            if not work:
                return
            self.counters.reaped += work

    async def leave(self) -> None:
        """Expire this node's lease at once (readers stop counting it), then purge its entries."""
        presence = self.presence
        await self.client.zadd(presence.layout.nodes, {presence.me: 0})
        while True:
            before = self.counters.reaped
            await self.reap(presence.me)
            if self.counters.reaped == before:
                return

    async def check_unique(self, node_id: str) -> None:
        """Refuse a node id that another live process renews (own-message dropping needs it).

        A lease left by a crashed predecessor with the same id is taken over.

        Raises:
            RuntimeError: another live process uses the id.
        """
        nodes, me = self.presence.layout.nodes, self.presence.me
        lease, now = await self.client.eval(wire.LEASE, 1, nodes, me)
        if lease <= now:
            return
        await asyncio.sleep(1.5 * self.heartbeat_interval)
        renewed, _ = await self.client.eval(wire.LEASE, 1, nodes, me)
        if renewed > lease:
            raise RuntimeError(
                f"node id {node_id!r} is already live in namespace "
                f"{self.presence.layout.prefix[:-1]!r}; "
                "give every registry its own node_id (the default is random)"
            )

    async def count(self, key: Key) -> int:
        """Live connections of ``key`` on live nodes (one round trip, bounded by ``op_timeout``)."""
        layout = self.presence.layout
        presence = layout.presence_key(wire.name_of(key))
        return int(await self._call(wire.COUNT, 2, presence, layout.nodes))

    async def online_names(self) -> list[bytes]:
        """Names of the keys with a connection on a live node (one round trip)."""
        layout = self.presence.layout
        names: list[bytes] = await self._call(wire.ONLINE_KEYS, 1, layout.nodes, layout.prefix)
        return names

    async def _call(self, script: str, numkeys: int, *args: Any) -> Any:
        try:
            with anyio.fail_after(self.op_timeout):
                return await self.client.eval(script, numkeys, *args)
        except (*BROKEN, TimeoutError) as exc:
            self.counters.error(exc)
            raise BackendUnavailable("redis", str(exc) or type(exc).__name__) from exc
