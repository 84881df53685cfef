"""The Redis backend: registries in many processes and machines act as one.

Needs ``pip install 'wsregistry[redis]'`` (redis-py) and asyncio: redis-py's
client is asyncio-only, so a registry with this backend cannot run on trio.

How it works (names and wire format: ``wsregistry.backends._redis_wire``):

* **Interest routing.** A node subscribes to ``ns:k:<key>`` when its first
  connection of a key arrives and unsubscribes after the last leaves; likewise
  ``ns:g:<group>`` for groups. Every node subscribes to ``ns:all`` (broadcasts)
  and to its own ``ns:n:<node>`` (sends to one connection id, found through the
  ``ns:conns`` map, and liveness probes). A node therefore processes only
  traffic for its own keys and groups, plus broadcasts.
* **Exactly once while Redis is up.** The registry delivers its own
  connections itself; a node drops envelopes it published (origin id), uses
  one subscription connection at a time and never retries a publish, so no
  connection gets a message twice. Per-publisher order holds: one writer task
  sends publishes in call order, batched into pipelines.
* **Presence with leases.** Each node keeps a lease in ``ns:nodes`` (expiry on
  Redis's clock) renewed every ``heartbeat_interval``; its keys' counts live in
  ``ns:p:<key>``. Readers ignore nodes whose lease expired, so a crashed
  (``kill -9``) process's connections disappear from :meth:`presence_count`,
  :meth:`online_keys` and ``is_online`` within ``presence_timeout`` (default
  3 x ``heartbeat_interval`` = 3 s), and any live node purges its entries at
  its next heartbeat.
* **Failures.** If Redis goes away, local delivery goes on. :meth:`publish`
  does not wait for Redis: it queues the envelope for the writer and returns;
  once a Redis command has failed (until the writer's resync succeeds) or
  while ``max_pending`` envelopes wait, it raises
  :class:`~wsregistry.errors.BackendUnavailable`, which the registry counts in
  ``stats().backend_errors``. Envelopes lost in flight, or still queued when a
  command failed, are counted in ``health().detail["publish_failures"]``.
  Delivery is at-most-once across an outage: nothing is replayed later. The
  subscription link reconnects with jittered exponential backoff and
  subscribes to everything again; presence is rewritten (re-asserted) after
  every reconnect. A probe published to the node's own channel every
  ``probe_interval`` detects a link that is connected but deaf (within
  ``probe_interval + probe_timeout``) and rebuilds it. :meth:`health` (also in
  ``registry.stats().backend``) and the ``on_state_change`` callback show the
  state.

Standalone Redis (or a primary with replicas) only: the Lua scripts touch keys
they compute, which Redis Cluster does not allow.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise ImportError(
        "wsregistry.backends.redis needs redis-py: pip install 'wsregistry[redis]'"
    ) from exc

from ..envelope import Envelope, EnvelopeKind
from ..errors import BackendUnavailable
from ..stats import BackendHealth
from . import _redis_wire as wire
from ._redis_emitter import RedisEmitter, SyncRedisEmitter
from ._redis_listener import Backoff, Listener
from .base import Backend, LocalNode

if TYPE_CHECKING:
    from redis.asyncio.client import Pipeline

    from .._types import Key

__all__ = ["RedisBackend", "RedisEmitter", "SyncRedisEmitter"]

logger = logging.getLogger("wsregistry")

_BROKEN = (RedisError, OSError, asyncio.TimeoutError)

# Outbox items: (tag, a, b)
_PUB = 0  # publish data b to channel a
_TO_CONN = 1  # publish data b to the node holding connection a
_KEY = 2  # rewrite presence of key a
_CONN = 3  # rewrite the node map entry of connection a
_FLUSH = 4  # resolve waiter a once everything before it reached Redis


def _redis_pool(
    url: str, *, socket_timeout: float, connect_timeout: float
) -> aioredis.ConnectionPool:
    """A connection pool that never retries (a retried publish could deliver twice).

    RESP2 keeps pub/sub replies plain arrays (``pong`` included) on every server version.
    """
    return aioredis.ConnectionPool.from_url(
        url,
        protocol=2,
        retry=Retry(NoBackoff(), 0),
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
    )


class RedisBackend(Backend):
    """Connects registries through Redis pub/sub, with cluster-wide presence.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` or ``rediss://`` (TLS);
            ``unix://`` works too. Passed to redis-py.
        namespace: prefix of every channel and key (``[A-Za-z0-9_.-]``, at most
            64 characters), so several apps can share one Redis.
        heartbeat_interval: seconds between lease renewals.
        presence_timeout: seconds after which a node that stopped renewing its
            lease (crashed, partitioned) counts as gone. Default: 3 x
            ``heartbeat_interval``. Must exceed ``heartbeat_interval``.
        probe_interval: seconds between liveness probes of the subscription link.
        probe_timeout: seconds a probe may take before the link is rebuilt.
        reconnect_backoff: ``(first, cap)`` seconds of the jittered exponential
            reconnect delay.
        op_timeout: seconds :meth:`connection_added` and :meth:`group_joined`
            wait for Redis before giving up (they never raise for Redis failures).
        socket_timeout: seconds one Redis command may take.
        max_message_bytes: largest encoded envelope published; bigger ones are
            delivered locally only and counted in ``detail["oversized"]``.
        max_pending: most envelopes waiting for the writer; beyond it
            :meth:`publish` raises ``BackendUnavailable``.
        on_state_change: called with a :class:`~wsregistry.BackendHealth`
            whenever the backend connects or disconnects (from the event loop;
            keep it short; exceptions are logged and counted).

    Raises:
        TypeError, ValueError: an option is out of range.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "wsregistry",
        heartbeat_interval: float = 1.0,
        presence_timeout: float | None = None,
        probe_interval: float = 2.0,
        probe_timeout: float = 2.0,
        reconnect_backoff: tuple[float, float] = (0.1, 5.0),
        op_timeout: float = 5.0,
        socket_timeout: float = 5.0,
        max_message_bytes: int = 4 * 1024 * 1024,
        max_pending: int = 100_000,
        on_state_change: Callable[[BackendHealth], object] | None = None,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be str, got {type(url).__name__}")
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {url!r}")
        self._layout = wire.Layout(namespace)
        for name, value in (
            ("heartbeat_interval", heartbeat_interval),
            ("probe_interval", probe_interval),
            ("probe_timeout", probe_timeout),
            ("op_timeout", op_timeout),
            ("socket_timeout", socket_timeout),
            *zip(("reconnect_backoff[0]", "reconnect_backoff[1]"), reconnect_backoff, strict=True),
        ):
            _check_seconds(name, value)
        if presence_timeout is None:
            presence_timeout = 3 * heartbeat_interval
        _check_seconds("presence_timeout", presence_timeout)
        if presence_timeout <= heartbeat_interval:
            raise ValueError("presence_timeout must be greater than heartbeat_interval")
        for name, count in (("max_message_bytes", max_message_bytes), ("max_pending", max_pending)):
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"{name} must be a positive int, got {count!r}")
        if on_state_change is not None and not callable(on_state_change):
            raise TypeError("on_state_change must be callable")
        self.url = url
        self.namespace = namespace
        self.heartbeat_interval = float(heartbeat_interval)
        self.presence_timeout = float(presence_timeout)
        self.probe_interval = float(probe_interval)
        self.probe_timeout = float(probe_timeout)
        self.reconnect_backoff = (float(reconnect_backoff[0]), float(reconnect_backoff[1]))
        self.op_timeout = float(op_timeout)
        self.socket_timeout = float(socket_timeout)
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self.on_state_change = on_state_change
        self._node: LocalNode | None = None
        self._closed = False
        self._client: aioredis.Redis | None = None
        self._listener: Listener | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: deque[tuple[int, Any, Any]] = deque()
        self._pending_publishes = 0
        self._wake: asyncio.Event | None = None
        self._resync = True
        self._writer_ok = False
        self._reported = False
        self._link_seen = False
        self._up: asyncio.Event | None = None
        self._conns: dict[str, Key] = {}
        self._interest: dict[str, int] = {}
        self._probes: dict[str, asyncio.Event] = {}
        self._origin = b""
        self._me = ""
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "published",
                "publish_failures",
                "rejected",
                "oversized",
                "received",
                "processed",
                "delivered",
                "unmatched",
                "own",
                "malformed",
                "probes",
                "probe_failures",
                "probes_late",
                "lease_lost",
                "resyncs",
                "task_failures",
            ),
            0,
        )
        self._errors = 0
        self._reconnects = 0
        self._last_error = ""
        self._last_change = time.time()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<RedisBackend {self._layout.prefix[:-1]} {state}>"

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether publishes and subscriptions currently reach Redis."""
        listener = self._listener
        return self._writer_ok and listener is not None and listener.up and not self._closed

    async def start(self, node: LocalNode) -> None:
        """Connect, subscribe, write this node's lease and start the background tasks.

        Raises:
            RuntimeError: not running on asyncio (e.g. trio), started twice, or
                another live process uses the same node id in this namespace.
            BackendUnavailable: Redis cannot be reached within ``op_timeout``.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "RedisBackend needs asyncio (redis-py is asyncio-only); "
                "run the registry on asyncio, not trio"
            ) from None
        if self._node is not None or self._closed:
            raise RuntimeError("a RedisBackend serves one registry and starts once")
        self._node = node
        self._origin = node.node_id.encode("utf-8")
        self._me = wire.name_of(node.node_id)
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        pool = _redis_pool(
            self.url, socket_timeout=self.socket_timeout, connect_timeout=self.op_timeout
        )
        self._client = aioredis.Redis(connection_pool=pool)
        self._listener = Listener(
            pool,
            on_message=self._on_message,
            on_state=self._on_link,
            backoff=Backoff(*self.reconnect_backoff),
        )
        self._listener.wanted.update((self._layout.all, self._layout.node_channel(self._me)))
        try:
            await asyncio.wait_for(self._client.ping(), self.op_timeout)
            await self._check_unique(node.node_id)
        except _BROKEN as exc:
            await self._release()
            raise BackendUnavailable("redis", f"cannot reach {_safe_url(self.url)}: {exc}") from exc
        except BaseException:
            await self._release()
            raise
        for name, loop in (
            ("listener", self._listener.run),
            ("writer", self._write_loop),
            ("heartbeat", self._heartbeat_loop),
            ("probe", self._probe_loop),
        ):
            self._tasks.append(asyncio.ensure_future(self._supervise(name, loop)))
        waiter = self._flush_waiter()
        try:
            await asyncio.wait_for(waiter.wait(), self.op_timeout)
            await asyncio.wait_for(self._up.wait(), self.op_timeout)
        except asyncio.TimeoutError:
            await self.aclose()
            raise BackendUnavailable("redis", "could not subscribe within op_timeout") from None
        except BaseException:  # cancelled while starting: leave no task behind
            self._closed = True
            for task in self._tasks:
                task.cancel()
            raise
        logger.debug("redis backend of node %s started", node.node_id)

    async def _check_unique(self, node_id: str) -> None:
        """Refuse a node id that another live process renews (own-message dropping needs it).

        A lease left by a crashed predecessor with the same id is taken over.
        """
        client = self._client
        assert client is not None
        nodes = self._layout.nodes
        lease, now = await client.eval(wire.LEASE, 1, nodes, self._me)
        if lease <= now:
            return
        await asyncio.sleep(1.5 * self.heartbeat_interval)
        renewed, _ = await client.eval(wire.LEASE, 1, nodes, self._me)
        if renewed > lease:
            raise RuntimeError(
                f"node id {node_id!r} is already live in namespace {self.namespace!r}; "
                "give every registry its own node_id (the default is random)"
            )

    async def aclose(self) -> None:
        """Stop the tasks, remove this node's presence and close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.stop()
        if self._wake is not None:
            self._wake.set()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        # Loops also stop on ``_closed``: redis-py may swallow a cancellation mid-command.
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=self.op_timeout)
            if stuck:
                logger.error("%d redis backend tasks did not stop", len(stuck))
        for _tag, item, _data in self._outbox:
            if _tag == _FLUSH:
                item.set()
        self._outbox.clear()
        client = self._client
        if client is not None and self._me:
            try:
                await asyncio.wait_for(self._leave(client), self.op_timeout)
            except _BROKEN as exc:
                logger.info("could not remove presence of node %s: %r", self._me, exc)
        await self._release()
        self._notify_state()

    async def _release(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    async def _supervise(self, name: str, loop: Callable[[], Any]) -> None:
        """Run a background loop forever: log, count and restart it if it fails."""
        backoff = Backoff(*self.reconnect_backoff)
        while not self._closed:
            try:
                await loop()
                if self._closed:
                    return
                raise RuntimeError(f"{name} loop returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._stats["task_failures"] += 1
                self._error(exc)
                logger.exception("redis backend %s task failed; restarting it", name)
            await asyncio.sleep(backoff.next_delay())

    # -- publishing --------------------------------------------------------------------

    async def publish(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for the other nodes; returns without waiting for Redis.

        Envelopes go out in call order. One that is lost after it was queued
        (Redis failed mid-flight) is counted in ``detail["publish_failures"]``.

        Publishing needs only the command link: while just the subscription
        link is down (and reconnecting) this node still reaches the others.

        Raises:
            BackendUnavailable: Redis commands are failing (until the writer
                reconnects), or ``max_pending`` envelopes are already waiting.
                Nothing is queued then.
        """
        if not self._writer_ok or self._closed:
            self._stats["rejected"] += 1
            raise BackendUnavailable("redis", "not connected; delivered locally only")
        if self._pending_publishes >= self.max_pending:
            self._stats["rejected"] += 1
            raise BackendUnavailable("redis", f"{self.max_pending} publishes already pending")
        data = wire.pack(envelope, self._origin)
        if len(data) > self.max_message_bytes:
            self._stats["oversized"] += 1
            self._error(None, f"{len(data)}-byte message exceeds max_message_bytes")
            logger.warning(
                "not publishing a %d-byte message (max_message_bytes=%d); delivered locally only",
                len(data),
                self.max_message_bytes,
            )
            return
        if envelope.kind is EnvelopeKind.CONNECTION:
            self._queue(_TO_CONN, envelope.target, data)
        else:
            self._queue(_PUB, self._layout.channel_of(envelope), data)
        self._pending_publishes += 1

    def _queue(self, tag: int, item: Any, data: Any = None) -> None:
        self._outbox.append((tag, item, data))
        wake = self._wake
        if wake is not None:
            wake.set()

    def _flush_waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        self._queue(_FLUSH, event)
        return event

    async def _write_loop(self) -> None:
        wake = self._wake
        assert wake is not None
        backoff = Backoff(*self.reconnect_backoff)
        while not self._closed:
            if not self._outbox and not self._resync:
                wake.clear()
                await wake.wait()
                continue
            ok = await (self._write_resync() if self._resync else self._write_batch())
            if ok:
                backoff.reset()
            else:
                await asyncio.sleep(backoff.next_delay())

    async def _write_batch(self) -> bool:
        client = self._client
        assert client is not None
        outbox = self._outbox
        pipe = client.pipeline(transaction=False)
        layout = self._layout
        flushes: list[asyncio.Event] = []
        keys: set[Key] = set()
        conns: set[str] = set()
        publishes = 0
        for _ in range(min(len(outbox), 2048)):
            tag, item, data = outbox.popleft()
            if tag == _PUB:
                pipe.publish(item, data)
                publishes += 1
            elif tag == _TO_CONN:
                pipe.eval(
                    wire.TO_CONNECTION, 2, layout.conns, layout.nodes, item, layout.prefix, data
                )
                publishes += 1
            elif tag == _KEY:
                keys.add(item)
            elif tag == _CONN:
                conns.add(item)
            else:
                flushes.append(item)
        self._pending_publishes -= publishes
        for key in keys:
            self._write_key(pipe, key)
        for conn_id in conns:
            self._write_conn(pipe, conn_id)
        try:
            results = await pipe.execute(raise_on_error=False) if len(pipe) else []
        except _BROKEN as exc:
            self._commands_failed(exc, lost=publishes)
            return False
        finally:
            for event in flushes:  # waiters learn the outcome from ``connected``
                event.set()
        self._stats["published"] += publishes
        for result in results:
            if isinstance(result, Exception):
                self._error(result)
                logger.warning("redis command failed: %r", result)
        self._writer_ok_again()
        return True

    async def _write_resync(self) -> bool:
        """Rewrite this node's whole presence (after start, reconnects, a lost lease)."""
        client = self._client
        node = self._node
        assert client is not None
        assert node is not None
        self._resync = False
        # The snapshot below covers every presence change queued so far.
        self._outbox = deque(item for item in self._outbox if item[0] not in (_KEY, _CONN))
        pipe = client.pipeline(transaction=True)
        layout = self._layout
        me = self._me
        self._purge_into(pipe, drop_lease=False)
        pipe.eval(wire.HEARTBEAT, 1, layout.nodes, me, int(self.presence_timeout * 1000))
        names: dict[Any, Any] = {}
        for key in node.local_keys():
            name = wire.name_of(key)
            presence = layout.presence_key(name)
            names[name] = presence
            pipe.hset(presence, me, node.local_count(key))
        if names:
            pipe.hset(layout.node_keys(me), mapping=names)
        if self._conns:
            pipe.hset(layout.conns, mapping=dict.fromkeys(self._conns, me))
            pipe.sadd(layout.node_conns(me), *self._conns)
        try:
            await pipe.execute()
        except _BROKEN as exc:
            self._resync = True
            self._commands_failed(exc, lost=0)
            return False
        self._stats["resyncs"] += 1
        self._writer_ok_again()
        return True

    def _write_key(self, pipe: Pipeline, key: Key) -> None:
        node = self._node
        assert node is not None
        layout, me = self._layout, self._me
        name = wire.name_of(key)
        presence = layout.presence_key(name)
        count = node.local_count(key)
        if count:
            pipe.hset(presence, me, count)
            pipe.hset(layout.node_keys(me), name, presence)
        else:
            pipe.hdel(presence, me)
            pipe.hdel(layout.node_keys(me), name)

    def _write_conn(self, pipe: Pipeline, conn_id: str) -> None:
        layout, me = self._layout, self._me
        if conn_id in self._conns:
            pipe.hset(layout.conns, conn_id, me)
            pipe.sadd(layout.node_conns(me), conn_id)
        else:
            pipe.hdel(layout.conns, conn_id)
            pipe.srem(layout.node_conns(me), conn_id)

    def _purge_into(self, pipe: Any, *, drop_lease: bool) -> Any:
        layout = self._layout
        return pipe.eval(
            wire.PURGE_NODE,
            2,
            layout.nodes,
            layout.conns,
            layout.prefix,
            self._me,
            "1" if drop_lease else "0",
        )

    async def _leave(self, client: aioredis.Redis) -> None:
        """Remove this node's presence, and that of crashed nodes nobody reaped yet."""
        layout = self._layout
        await self._purge_into(client, drop_lease=True)
        await client.eval(wire.REAP, 2, layout.nodes, layout.conns, layout.prefix)

    def _commands_failed(self, exc: BaseException, *, lost: int) -> None:
        """A command to Redis failed: reject publishes until a resync succeeds.

        Publishes still queued are dropped and counted too: delivery is
        at-most-once across an outage, never a late replay.
        """
        queued = sum(1 for item in self._outbox if item[0] in (_PUB, _TO_CONN))
        if queued:
            self._outbox = deque(item for item in self._outbox if item[0] not in (_PUB, _TO_CONN))
            self._pending_publishes -= queued
            lost += queued
        self._stats["publish_failures"] += lost
        self._resync = True
        self._error(exc)
        node = self._node
        if node is not None:
            node.backend_error()
        logger.warning("redis command failed (%d publishes lost): %r", lost, exc)
        if self._writer_ok:
            self._writer_ok = False
            self._notify_state()

    def _writer_ok_again(self) -> None:
        if not self._writer_ok:
            self._writer_ok = True
            self._notify_state()

    # -- receiving ---------------------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        stats = self._stats
        stats["received"] += 1
        try:
            kind, origin = wire.peek(data)
            if origin == self._origin:
                stats["own"] += 1
                if kind == wire.PROBE:
                    event = self._probes.pop(wire.probe_token(data), None)
                    if event is not None:
                        event.set()
                return
            if kind == wire.PROBE:
                return
            envelope = wire.unpack(data)
        except wire.WireError as exc:
            stats["malformed"] += 1
            logger.debug("ignoring a malformed message: %s", exc)
            return
        node = self._node
        if node is None:
            return
        stats["processed"] += 1
        try:
            delivered = node.deliver(envelope)
        except Exception as exc:
            self._error(exc)
            logger.exception("delivering a remote envelope failed")
            return
        if delivered:
            stats["delivered"] += 1
        else:
            stats["unmatched"] += 1

    def _on_link(self, up: bool, error: BaseException | None) -> None:
        if up:
            if self._link_seen:
                self._reconnects += 1
                self._resync = True  # presence may have expired or Redis restarted
                if self._wake is not None:
                    self._wake.set()
            self._link_seen = True
            if self._up is not None:
                self._up.set()
        elif not self._closed:
            self._error(error)
            if self._node is not None:
                self._node.backend_error()
            logger.warning("redis subscription link lost: %r", error)
        self._notify_state()

    # -- membership --------------------------------------------------------------------

    async def connection_added(self, connection_id: str, key: Key, *, first_of_key: bool) -> None:
        """Publish presence and subscribe to the key's channel on its first connection.

        Waits (up to ``op_timeout``) until both are in effect while connected;
        returns at once while disconnected (the reconnect re-asserts everything).
        """
        self._conns[connection_id] = key
        self._presence_changed(connection_id, key)
        if first_of_key:
            self._want(self._layout.key_channel(key))
        await self._settle(subscribed=first_of_key)

    def connection_removed(self, connection_id: str, key: Key, *, last_of_key: bool) -> None:
        """Withdraw presence; unsubscribe after the key's last connection. Never blocks."""
        self._conns.pop(connection_id, None)
        self._presence_changed(connection_id, key)
        if last_of_key:
            self._unwant(self._layout.key_channel(key))

    def _presence_changed(self, connection_id: str, key: Key) -> None:
        if not self._resync:  # a pending resync rewrites everything (bounded outbox)
            self._queue(_CONN, connection_id)
            self._queue(_KEY, key)

    async def group_joined(self, group: str, *, first_of_group: bool) -> None:
        """Subscribe to the group's channel on its first local member."""
        if first_of_group:
            self._want(self._layout.group_channel(group))
            await self._settle(subscribed=True)

    def group_left(self, group: str, *, last_of_group: bool) -> None:
        """Unsubscribe after the group's last local member. Never blocks."""
        if last_of_group:
            self._unwant(self._layout.group_channel(group))

    def _want(self, channel: str) -> None:
        count = self._interest.get(channel, 0)
        self._interest[channel] = count + 1
        listener = self._listener
        if count == 0 and listener is not None:
            listener.want(channel)

    def _unwant(self, channel: str) -> None:
        count = self._interest.get(channel, 0) - 1
        listener = self._listener
        if count > 0:
            self._interest[channel] = count
            return
        self._interest.pop(channel, None)
        if listener is not None:
            listener.unwant(channel)

    async def _settle(self, *, subscribed: bool) -> None:
        listener = self._listener
        if listener is None or not self.connected:
            await asyncio.sleep(0)
            return
        flushed = self._flush_waiter()
        try:
            if subscribed:
                await listener.sync(self.op_timeout)
            await asyncio.wait_for(flushed.wait(), self.op_timeout)
        except asyncio.TimeoutError:
            self._error(None, "membership change not confirmed within op_timeout")

    # -- presence ----------------------------------------------------------------------

    async def presence_count(self, key: Key) -> int:
        """Live connections of ``key`` on nodes whose lease is live (one round trip).

        Raises:
            BackendUnavailable: Redis cannot answer.
        """
        layout = self._layout
        presence = layout.presence_key(wire.name_of(key))
        result = await self._call(wire.COUNT, 2, presence, layout.nodes)
        return int(result)

    async def online_keys(self) -> frozenset[Key]:
        """Every key with a connection on a live node (one round trip, O(online keys)).

        Raises:
            BackendUnavailable: Redis cannot answer.
        """
        layout = self._layout
        names = await self._call(wire.ONLINE_KEYS, 1, layout.nodes, layout.prefix)
        keys: set[Key] = set()
        for name in names:
            try:
                keys.add(wire.key_of(name.decode("ascii")))
            except (wire.WireError, UnicodeError):
                self._stats["malformed"] += 1
        return frozenset(keys)

    async def _call(self, script: str, numkeys: int, *args: Any) -> Any:
        client = self._client
        if client is None:
            raise BackendUnavailable("redis", "the backend is not running")
        try:
            return await client.eval(script, numkeys, *args)
        except _BROKEN as exc:
            self._error(exc)
            raise BackendUnavailable("redis", str(exc)) from exc

    async def _heartbeat_loop(self) -> None:
        layout = self._layout
        lease = int(self.presence_timeout * 1000)
        while not self._closed:
            await asyncio.sleep(self.heartbeat_interval)
            client = self._client
            if client is None or self._resync:
                continue  # the resync renews the lease
            try:
                alive = await client.eval(wire.HEARTBEAT, 1, layout.nodes, self._me, lease)
                await client.eval(wire.REAP, 2, layout.nodes, layout.conns, layout.prefix)
            except _BROKEN as exc:
                self._commands_failed(exc, lost=0)
                if self._wake is not None:
                    self._wake.set()  # the writer retries (resync) with backoff
                continue
            if not alive:
                self._stats["lease_lost"] += 1
                logger.warning("node %s lost its presence lease; re-asserting", self._me)
                self._resync = True
                if self._wake is not None:
                    self._wake.set()

    async def _probe_loop(self) -> None:
        channel = self._layout.node_channel(self._me)
        while not self._closed:
            await asyncio.sleep(self.probe_interval)
            listener, client = self._listener, self._client
            if listener is None or client is None or not listener.up:
                continue
            token = uuid.uuid4().hex
            event = asyncio.Event()
            self._probes[token] = event
            self._stats["probes"] += 1
            try:
                deaf = await self._probe_once(client, channel, token, event)
            except _BROKEN as exc:
                self._error(exc)  # Redis itself is unreachable: not the link's fault
                continue
            finally:
                self._probes.pop(token, None)
            if deaf:
                self._stats["probe_failures"] += 1
                logger.warning("redis subscription link is deaf (probe not received); rebuilding")
                listener.rebuild("liveness probe failed")

    async def _probe_once(
        self, client: aioredis.Redis, channel: str, token: str, event: asyncio.Event
    ) -> bool:
        """Publish a probe to this node's channel; ``True`` if the link is deaf.

        Deaf: Redis has no subscriber on the channel, or the link read nothing
        at all while the probe was due. A link that is busy reading a backlog
        is slow, not deaf, and is left alone (a rebuild would lose messages).
        """
        listener = self._listener
        assert listener is not None
        reads = listener.reads
        receivers = await client.publish(channel, wire.pack_probe(self._origin, token))
        if not receivers:
            return True  # Redis says nobody listens on our channel
        try:
            await asyncio.wait_for(event.wait(), self.probe_timeout)
        except asyncio.TimeoutError:
            if listener.reads > reads:
                self._stats["probes_late"] += 1
                return False
            return True
        return False

    # -- health ------------------------------------------------------------------------

    def _error(self, exc: BaseException | None, detail: str = "") -> None:
        self._errors += 1
        self._last_error = detail or repr(exc)

    def _notify_state(self) -> None:
        connected = self.connected
        if connected is self._reported:
            return
        self._reported = connected
        self._last_change = time.time()
        callback = self.on_state_change
        if callback is None:
            return
        try:
            callback(self.health())
        except Exception:
            self._errors += 1
            logger.exception("on_state_change callback failed")

    def health(self) -> BackendHealth:
        """Connection state and counters (non-blocking).

        ``detail`` holds: ``namespace``, ``node``, ``subscriptions`` (channels on
        the current link), ``link_failures`` (lost links and failed reconnect
        attempts), ``pending`` (publishes waiting for the writer),
        ``published``, ``publish_failures`` (lost after queueing), ``rejected``
        (``publish`` raised), ``oversized``, ``received`` (messages the link
        read), ``processed`` (envelopes handed to the registry: the measure of
        interest routing), ``delivered``/``unmatched`` (of those, reached a
        local connection or not), ``own`` (own publishes echoed back and
        dropped), ``malformed``, ``probes``, ``probe_failures`` (deaf links
        rebuilt), ``probes_late`` (a busy link answered late; left alone),
        ``lease_lost``, ``resyncs``, ``task_failures``, ``last_error`` and
        ``since`` (time of the last state change).
        """
        listener = self._listener
        detail: dict[str, Any] = {
            "namespace": self.namespace,
            "node": self._node.node_id if self._node is not None else None,
            "subscriptions": listener.subscriptions if listener is not None else 0,
            "link_failures": listener.failures if listener is not None else 0,
            "pending": self._pending_publishes,
            **self._stats,
            "last_error": self._last_error,
            "since": self._last_change,
        }
        return BackendHealth(
            name="redis",
            connected=self.connected,
            errors=self._errors,
            reconnects=self._reconnects,
            detail=detail,
        )


def _check_seconds(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _safe_url(url: str) -> str:
    """``url`` without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest
