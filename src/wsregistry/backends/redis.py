"""The Redis backend: registries in many processes and machines act as one.

Needs ``pip install 'wsregistry[redis]'`` (redis-py, with the ``hiredis``
parser) and asyncio: redis-py's client is asyncio-only, so a registry with this
backend cannot run on trio.

This module is the façade: options, lifecycle and the backend hooks. ``_redis_run``
wires one run (``start`` to ``aclose``) of the parts; each job lives in its own
module (the names and wire format in ``_redis_wire``):

* ``_redis_outbox``: the outbox of typed items and its one writer task, which
  sends publishes in call order, batched into pipelines, lingering briefly
  only under load (``publish_linger``).
* ``_redis_presence``: presence bookkeeping, the lease heartbeat, the bounded
  reaper of crashed nodes, presence queries and leaving.
* ``_redis_listener``: the subscription link, with readiness per channel.
* ``_redis_probe``: decoding received messages, and the liveness probe.
* ``_redis_health``: the counters of a run, and the supervision of background
  loops (a loop that fails is logged, counted and restarted; none dies silently).

Guarantees (the guide: ``docs/guides/scaling.md``):

* **Reachable when a call returns.** :meth:`RedisBackend.connection_added` and
  :meth:`RedisBackend.group_joined` return once the key's (group's) channel is
  subscribed *on Redis* and the presence is written, whichever call asked for
  the channel first: readiness is tracked per channel. Interest follows the
  registry's truth (its local count of a key; the last member leaving a
  group), not "first member" hints, so a cancelled first connect never leaves
  a channel unsubscribed for the members that stay. Bounded by ``op_timeout``;
  while Redis is unreachable they return at once.
* **Exactly once while Redis is up**, in order per publisher: the registry
  delivers its own connections itself, a node drops envelopes it published,
  one subscription connection exists at a time and publishes are never retried.
* **Shutdown.** :meth:`RedisBackend.flush` returns once every earlier publish
  was handed to Redis; :meth:`RedisBackend.aclose` flushes what is left (unless
  a flush was already cut short), withdraws this node's presence and releases
  every task and socket. Both obey cancellation at once (the registry bounds
  them by ``drain_timeout`` and ``close_timeout``); ``aclose`` bounds itself by
  ``op_timeout`` too. Publishes not confirmed by Redis then are counted in
  ``publish_failures``.
* **Presence with leases.** Each node keeps a lease in ``ns:nodes`` (expiry on
  Redis's clock) renewed at a fixed rate of ``heartbeat_interval``; readers
  ignore nodes whose lease expired, so a crashed process's connections vanish
  within ``presence_timeout``; live nodes purge them in bounded steps.
* **Failures.** Local delivery goes on. :meth:`RedisBackend.publish` raises
  :class:`~wsregistry.errors.BackendUnavailable` while commands fail (until a
  presence rewrite succeeds) or ``max_pending`` publishes wait; publishes lost
  in flight are counted. At-most-once across an outage: nothing is replayed.
  The link reconnects with jittered backoff and subscribes again; presence is
  rewritten after every reconnect; a deaf link is found by the probe and rebuilt.

Standalone Redis (or a primary with replicas) only: the Lua scripts touch keys
they compute, which Redis Cluster does not allow.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

try:
    import redis  # noqa: F401 - fail here, with the extra to install, if redis-py is missing
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise ImportError(
        "wsregistry.backends.redis needs redis-py: pip install 'wsregistry[redis]'"
    ) from exc

from ..envelope import Envelope, EnvelopeKind
from ..errors import BackendUnavailable
from ..stats import BackendHealth
from . import _redis_wire as wire
from ._redis_emitter import RedisEmitter, SyncRedisEmitter
from ._redis_health import Counters
from ._redis_outbox import Publish, PublishToConnection
from ._redis_presence import BROKEN, Leases
from ._redis_run import Run
from .base import Backend, LocalNode

if TYPE_CHECKING:
    from .._types import Key

__all__ = ["RedisBackend", "RedisEmitter", "SyncRedisEmitter"]

logger = logging.getLogger("wsregistry")


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
            ``heartbeat_interval``. Must be at least 2 x ``heartbeat_interval``
            (one late renewal never expires a live node).
        probe_interval: seconds between liveness probes of the subscription link.
        probe_timeout: seconds a probe may take before the link is rebuilt.
        reconnect_backoff: ``(first, cap)`` seconds of the jittered exponential
            reconnect delay.
        op_timeout: the bound of every call that waits for Redis: a connect or
            join waiting to be reachable, presence queries, start-up, and
            :meth:`aclose` as a whole.
        socket_timeout: seconds one Redis command may take on the wire.
        publish_linger: seconds the writer may wait to fill a bigger pipeline
            **under load** (two or more messages queued while the previous
            pipeline was in flight); a message published while the writer is idle
            goes out at once. 0 disables lingering. Default 0.5 ms.
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
        publish_linger: float = 0.0005,
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
        if presence_timeout < 2 * heartbeat_interval:
            raise ValueError(
                "presence_timeout must be at least 2 x heartbeat_interval "
                f"(got {presence_timeout} and {heartbeat_interval})"
            )
        if not isinstance(publish_linger, (int, float)) or isinstance(publish_linger, bool):
            raise TypeError("publish_linger must be a number of seconds")
        if math.isnan(publish_linger) or not 0 <= publish_linger <= 0.1:
            raise ValueError(f"publish_linger must be within 0..0.1 s, got {publish_linger}")
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
        self.publish_linger = float(publish_linger)
        self.max_message_bytes = max_message_bytes
        self.max_pending = max_pending
        self.on_state_change = on_state_change
        self._run: Run | None = None
        self._last: Run | None = None  # the previous run, for health() after close
        self._reported = False
        self._last_change = time.time()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<RedisBackend {self._layout.prefix[:-1]} {state}>"

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether publishes and subscriptions currently reach Redis."""
        run = self._run
        return run is not None and run.connected

    async def start(self, node: LocalNode) -> None:
        """Connect, subscribe, write this node's presence and start the background tasks.

        Called by the registry each time it starts; a backend starts again after
        :meth:`aclose` with a clean state (counters included). Waits at most
        ``op_timeout``.

        Raises:
            RuntimeError: not running on asyncio (e.g. trio), already running, or
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
        if self._run is not None:
            raise RuntimeError("this RedisBackend is already running (it serves one registry)")
        run = Run(self, node)
        self._run = run
        try:
            with anyio.fail_after(self.op_timeout):
                try:
                    await run.client.ping()
                except BROKEN as exc:
                    raise BackendUnavailable(
                        "redis", f"cannot reach {_safe_url(self.url)}: {exc}"
                    ) from exc
                await run.leases.check_unique(node.node_id)
                run.spawn_tasks()
                while not await run.publisher.mark().done:
                    pass  # the writer retries (with backoff) until op_timeout
                await run.up.wait()
        except BaseException as exc:
            self._last, self._run = run, None
            with anyio.CancelScope(shield=True):
                await run.release()
            if isinstance(exc, TimeoutError):
                raise BackendUnavailable(
                    "redis", f"could not start within op_timeout ({self.op_timeout}s)"
                ) from None
            if isinstance(exc, BROKEN) and not isinstance(exc, asyncio.CancelledError):
                raise BackendUnavailable("redis", str(exc)) from exc
            raise
        self._notify_state()
        logger.debug("redis backend of node %s started", node.node_id)

    async def flush(self) -> None:
        """Wait until every publish made so far was handed to Redis (or counted as lost).

        Blocks until then; obeys cancellation at once (the registry bounds it by
        ``drain_timeout``). Returns at once when not running. If cut short,
        :meth:`aclose` does not wait for Redis again: what is still unsent is
        dropped and counted in ``detail["publish_failures"]``.
        """
        run = self._run
        if run is None:
            return
        try:
            await run.publisher.mark().done
        except BaseException:
            run.flush_cut_short = True
            raise

    async def aclose(self) -> None:
        """Flush, withdraw this node's presence, stop every task and close the sockets.

        Idempotent. Waits at most ``op_timeout`` for Redis in all, and less when
        cancelled (the registry bounds it by ``close_timeout``): whatever the
        outcome, every task and connection is released before it returns or
        raises (a shielded cleanup of at most 0.1 s). Publishes Redis did not
        confirm are counted in ``detail["publish_failures"]``.
        """
        run = self._run
        if run is None:
            return
        run.publisher.closing = True
        try:
            with anyio.move_on_after(self.op_timeout):
                if not run.flush_cut_short and run.publisher.ok:
                    await run.publisher.mark().done
                if run.publisher.ok:
                    await run.leases.leave()
        except BROKEN as exc:
            logger.info("could not withdraw the presence of node %s: %r", run.me, exc)
        finally:
            self._last, self._run = run, None
            with anyio.CancelScope(shield=True):
                await run.release()
            self._notify_state()

    # -- publishing --------------------------------------------------------------------

    @property
    def reaches_other_nodes(self) -> bool:
        """``True``: other processes may hold any key (Redis cannot tell cheaply)."""
        return True

    async def publish(self, envelope: Envelope) -> None:
        """Queue ``envelope`` for the other nodes; returns without waiting for Redis.

        Envelopes go out in call order. One lost after it was queued (Redis
        failed mid-flight, or shutdown came first) is counted in
        ``detail["publish_failures"]``. Publishing needs only the command link:
        while just the subscription link is down this node still reaches the others.

        Raises:
            BackendUnavailable: not running, Redis commands are failing (until the
                writer reconnects), or ``max_pending`` envelopes already wait.
                Nothing is queued then.
        """
        run = self._run
        if run is None:
            raise BackendUnavailable("redis", "the backend is not running")
        data = wire.pack(envelope, run.origin)
        if len(data) > self.max_message_bytes:
            run.counters.oversized += 1
            run.counters.error(None, f"{len(data)}-byte message exceeds max_message_bytes")
            logger.warning(
                "not publishing a %d-byte message (max_message_bytes=%d); delivered locally only",
                len(data),
                self.max_message_bytes,
            )
            return
        if envelope.kind is EnvelopeKind.CONNECTION:
            run.publisher.publish(PublishToConnection(envelope.target, data))  # type: ignore[arg-type]
        else:
            run.publisher.publish(Publish(self._layout.channel_of(envelope), data))

    # -- membership --------------------------------------------------------------------

    async def connection_added(self, connection_id: str, key: Key, *, first_of_key: bool) -> None:
        """Announce the connection and subscribe to its key's channel if needed.

        Returns once the key's channel is subscribed on Redis (whoever asked
        first: ``first_of_key`` is only a hint) and the presence is written, or
        after ``op_timeout``; at once while Redis is unreachable (everything is
        rewritten when it is back). Never raises for Redis failures.
        """
        run = self._run
        if run is None:
            return
        channel = self._layout.key_channel(key)
        run.presence.added(connection_id, key)
        run.listener.want(channel)
        await run.settle(channel, presence=True)

    def connection_removed(self, connection_id: str, key: Key, *, last_of_key: bool) -> None:
        """Withdraw the connection; unsubscribe once its key has none here. Never blocks."""
        run = self._run
        if run is None:
            return
        run.presence.removed(connection_id, key)
        run.publisher.wake()
        if last_of_key or not run.node.local_count(key):
            run.listener.unwant(self._layout.key_channel(key))

    async def group_joined(self, group: str, *, first_of_group: bool) -> None:
        """Subscribe to the group's channel if needed; return once it is subscribed.

        Bounded by ``op_timeout``; at once while Redis is unreachable.
        """
        run = self._run
        if run is None:
            return
        channel = self._layout.group_channel(group)
        run.listener.want(channel)
        await run.settle(channel, presence=False)

    def group_left(self, group: str, *, last_of_group: bool) -> None:
        """Unsubscribe after the group's last local member. Never blocks."""
        run = self._run
        if run is not None and last_of_group:
            run.listener.unwant(self._layout.group_channel(group))

    # -- presence ----------------------------------------------------------------------

    async def presence_count(self, key: Key) -> int:
        """Live connections of ``key`` on nodes whose lease is live (one round trip).

        Raises:
            BackendUnavailable: not running, or Redis cannot answer within ``op_timeout``.
        """
        return await self._leases().count(key)

    async def online_keys(self) -> frozenset[Key]:
        """Every key with a connection on a live node (one round trip, O(online keys)).

        Raises:
            BackendUnavailable: not running, or Redis cannot answer within ``op_timeout``.
        """
        leases = self._leases()
        keys: set[Key] = set()
        for name in await leases.online_names():
            try:
                keys.add(wire.key_of(name.decode("ascii")))
            except (wire.WireError, UnicodeError):
                leases.counters.malformed += 1
        return frozenset(keys)

    def _leases(self) -> Leases:
        run = self._run
        if run is None:
            raise BackendUnavailable("redis", "the backend is not running")
        return run.leases

    # -- health ------------------------------------------------------------------------

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
            run = self._run or self._last
            if run is not None:
                run.counters.errors += 1
            logger.exception("on_state_change callback failed")

    def health(self) -> BackendHealth:
        """Connection state and counters of the current (or last) run (non-blocking).

        ``detail`` holds: ``namespace``, ``node``, ``subscriptions`` (channels on
        the current link), ``link_failures`` (lost links and failed reconnect
        attempts), ``pending`` (publishes waiting for the writer),
        ``published``, ``publish_failures`` (queued, then lost: a failed
        pipeline, or not confirmed by Redis at shutdown), ``rejected``
        (``publish`` raised), ``oversized``, ``batches`` (pipelines sent),
        ``lingered`` (batches that waited to fill up under load), ``received``
        (messages the link read), ``processed`` (envelopes handed to the
        registry: the measure of interest routing), ``delivered``/``unmatched``
        (of those, reached a local connection or not), ``own`` (own publishes
        echoed back and dropped), ``malformed``, ``probes``,
        ``probe_failures`` (deaf links rebuilt), ``probes_late`` (a busy link
        answered late; left alone), ``lease_lost``, ``resyncs`` (presence
        rewrites), ``reaped`` (entries of crashed nodes purged),
        ``task_failures``, ``last_error`` and ``since`` (time of the last
        state change).
        """
        run = self._run or self._last
        if run is None:
            counters, detail = Counters(), {"subscriptions": 0, "link_failures": 0, "pending": 0}
            node = None
        else:
            counters, detail, node = run.counters, run.link_detail(), run.node.node_id
        return BackendHealth(
            name="redis",
            connected=self.connected,
            errors=counters.errors,
            reconnects=counters.reconnects,
            detail={
                "namespace": self.namespace,
                "node": node,
                **detail,
                **counters.detail(),
                "since": self._last_change,
            },
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
