"""The NATS backend: registries in many processes and machines act as one, over NATS.

Needs ``pip install 'wsregistry[nats]'`` (nats-py), a NATS server with
JetStream enabled (``nats-server -js``), and asyncio: nats-py is asyncio-only,
so a registry with this backend cannot run on trio.

How it works (subjects and wire format: ``wsregistry.backends._nats_wire``):

* **Interest routing by subject.** A node subscribes to ``ns.k.<key>`` while it
  holds a connection of the key and to ``ns.g.<group>`` while a local
  connection is a member of the group; every node subscribes to ``ns.b``
  (broadcasts) and ``ns.c`` (sends to one connection id). Names become
  injective, typed base64url tokens, so ``*``, ``>``, ``.``, spaces or
  ``"42"`` versus ``42`` never act as wildcards or collide. The NATS server
  (or cluster) forwards a message only to the nodes with interest.
* **Exactly once while NATS is up.** The registry delivers its own connections
  itself; the connection is made with ``no_echo`` so the server never hands a
  node its own publishes (and envelopes carrying this node's id are dropped as
  well); core NATS never redelivers. Messages are handled in the order the
  server sent them (see ``_nats_interest``), so a publisher's order holds
  across keys, groups, broadcasts and connection sends.
* **Presence with leases** (``_nats_presence``): one JetStream message per
  live connection, written once, plus a per-node lease in a stream whose
  ``max_age`` is ``presence_timeout``, renewed every ``heartbeat_interval``.
  Reads count only entries of nodes whose lease is live, so a crashed
  (``kill -9``) process's connections disappear from :meth:`presence_count`,
  :meth:`online_keys` and ``is_online`` within ``presence_timeout`` (default
  3 x ``heartbeat_interval`` = 3 s) of its last renewal; live nodes purge its
  entries at their next heartbeat.
* **Failures.** nats-py reconnects by itself (every ``reconnect_wait``) and
  replays the subscriptions; the backend then re-asserts presence.
  :meth:`publish` raises :class:`~wsregistry.errors.BackendUnavailable` while
  disconnected (the registry counts it; local delivery goes on). Delivery is
  at-most-once across an outage: nothing published meanwhile is replayed.
  A dead TCP link is detected by pings every ``ping_interval``. :meth:`health`
  and ``on_state_change`` show the state.

Not supported yet: connection-state recovery (message history) over NATS.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

try:
    import nats
    import nats.errors
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise ImportError(
        "wsregistry.backends.nats needs nats-py: pip install 'wsregistry[nats]'"
    ) from exc

from ..envelope import Envelope
from ..errors import BackendUnavailable
from ..stats import BackendHealth
from . import _nats_wire as wire
from ._nats_barrier import Barrier
from ._nats_interest import Interest
from ._nats_presence import Presence
from .base import Backend, LocalNode

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

    from .._types import Key

__all__ = ["NatsBackend"]

logger = logging.getLogger("wsregistry")

_STORAGE = ("memory", "file")
_CLOSING: set[asyncio.Task[None]] = set()  # client closes finishing after a cancelled aclose


class NatsBackend(Backend):
    """Connects registries through NATS subjects, with presence in JetStream.

    Args:
        servers: a ``nats://`` (or ``tls://``) URL or a list of them (the
            servers of one cluster); passed to nats-py.
        namespace: first token of every subject and part of the stream names
            (``[A-Za-z0-9_-]``, at most 64 characters), so several apps can
            share one NATS.
        heartbeat_interval: seconds between lease renewals.
        presence_timeout: seconds after its last renewal when a node that
            stopped renewing its lease (crashed, partitioned) counts as gone.
            Default: 3 x ``heartbeat_interval``. Must exceed ``heartbeat_interval``.
        replicas: JetStream replicas of the presence streams (1, or up to 5 in
            a NATS cluster, so presence survives the loss of a server).
        storage: ``"memory"`` (default: presence is rewritten after a server
            restart anyway) or ``"file"``.
        reconnect_wait: seconds between reconnect attempts.
        ping_interval: seconds between pings that detect a dead link (it is
            dropped after two unanswered pings).
        op_timeout: seconds :meth:`start`, :meth:`connection_added`,
            :meth:`group_joined` and presence requests wait for NATS.
        connect_options: extra keyword arguments for ``nats.connect``
            (credentials, TLS...).
        on_state_change: called with a :class:`~wsregistry.BackendHealth`
            whenever the backend connects or disconnects (from the event loop;
            keep it short; exceptions are logged and counted).

    Raises:
        TypeError, ValueError: an option is out of range.
    """

    def __init__(
        self,
        servers: str | Sequence[str] = "nats://127.0.0.1:4222",
        *,
        namespace: str = "wsregistry",
        heartbeat_interval: float = 1.0,
        presence_timeout: float | None = None,
        replicas: int = 1,
        storage: str = "memory",
        reconnect_wait: float = 0.5,
        ping_interval: float = 2.0,
        op_timeout: float = 5.0,
        connect_options: dict[str, Any] | None = None,
        on_state_change: Callable[[BackendHealth], object] | None = None,
    ) -> None:
        if isinstance(servers, str):
            servers = [servers]
        servers = list(servers)
        if not servers or not all(isinstance(s, str) for s in servers):
            raise TypeError("servers must be a URL or a non-empty list of URLs")
        self._layout = wire.Layout(namespace)
        for name, value in (
            ("heartbeat_interval", heartbeat_interval),
            ("reconnect_wait", reconnect_wait),
            ("ping_interval", ping_interval),
            ("op_timeout", op_timeout),
        ):
            _check_seconds(name, value)
        if presence_timeout is None:
            presence_timeout = 3 * heartbeat_interval
        _check_seconds("presence_timeout", presence_timeout)
        if presence_timeout <= heartbeat_interval:
            raise ValueError("presence_timeout must be greater than heartbeat_interval")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= 5:
            raise ValueError(f"replicas must be an int from 1 to 5, got {replicas!r}")
        if storage not in _STORAGE:
            raise ValueError(f"storage must be 'memory' or 'file', got {storage!r}")
        if on_state_change is not None and not callable(on_state_change):
            raise TypeError("on_state_change must be callable")
        self.servers = servers
        self.namespace = namespace
        self.heartbeat_interval = float(heartbeat_interval)
        self.presence_timeout = float(presence_timeout)
        self.replicas = replicas
        self.storage = storage
        self.reconnect_wait = float(reconnect_wait)
        self.ping_interval = float(ping_interval)
        self.op_timeout = float(op_timeout)
        self.connect_options = dict(connect_options or {})
        self.on_state_change = on_state_change
        self._node: LocalNode | None = None
        self._client: Client | None = None
        self._interest: Interest | None = None
        self._presence: Presence | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._barrier: Barrier | None = None
        self._origin = b""
        self._me = ""
        self._replies = ""
        self._reset_counters()

    def _reset_counters(self) -> None:
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
                "flush_failures",
                "task_failures",
            ),
            0,
        )
        self._errors = 0
        self._reconnects = 0
        self._last_error = ""
        self._last_change = time.time()
        self._reported = False

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<NatsBackend {self.namespace} {state}>"

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether the link to NATS is up."""
        client = self._client
        return client is not None and client.is_connected

    async def start(self, node: LocalNode) -> None:
        """Connect, subscribe, write this node's lease and start the presence writer.

        Raises:
            RuntimeError: not running on asyncio (e.g. trio), or already started.
            BackendUnavailable: NATS (with JetStream) cannot be reached within
                ``op_timeout``.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "NatsBackend needs asyncio (nats-py is asyncio-only); "
                "run the registry on asyncio, not trio"
            ) from None
        if self._client is not None:
            raise RuntimeError("this NatsBackend is already running; aclose() it first")
        self._reset_counters()
        self._node = node
        self._origin = node.node_id.encode("utf-8")
        self._me = wire.subject_token(node.node_id)
        self._replies = self._layout.replies(self._me)
        try:
            client = await asyncio.wait_for(self._connect(), self.op_timeout)
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            self._node = None
            raise BackendUnavailable("nats", f"cannot reach {self.servers}: {exc!r}") from exc
        self._client = client
        presence = self._presence = Presence(
            client,
            self._layout,
            self._me,
            heartbeat_interval=self.heartbeat_interval,
            presence_timeout=self.presence_timeout,
            replicas=self.replicas,
            storage=self.storage,
            timeout=self.op_timeout,
            on_error=self._error,
            backoff=self._backoff,
        )
        barrier = self._barrier = Barrier(
            client,
            request_subject=self._layout.sync,
            reply_subject=self._replies,
            node=self._me,
            live_nodes=presence.live_nodes,
            on_error=self._error,
            timeout=self.op_timeout,
        )
        interest = self._interest = Interest(
            client,
            on_message=self._on_message,
            on_error=self._error,
            timeout=self.op_timeout,
            barrier=barrier.wait,
        )
        try:
            layout = self._layout
            for subject in (self._replies, layout.sync, layout.all, layout.conn):
                if not await interest.want(subject):
                    raise BackendUnavailable("nats", f"could not subscribe: {self._last_error}")
            self._tasks.append(asyncio.ensure_future(self._supervise(presence)))
            await asyncio.wait_for(presence.written.wait(), self.op_timeout)
            barrier.ready = True
            await barrier.wait()  # broadcasts reach us from every server of a cluster
        except asyncio.TimeoutError:
            await self.aclose()
            raise BackendUnavailable(
                "nats", f"could not write presence within op_timeout: {self._last_error}"
            ) from None
        except BaseException:
            await self.aclose()
            raise
        self._notify_state()
        logger.debug("nats backend of node %s started", node.node_id)

    async def _connect(self) -> Client:
        options: dict[str, Any] = {
            "name": f"wsregistry {self._origin.decode('utf-8', 'replace')}",
            "no_echo": True,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": self.reconnect_wait,
            "connect_timeout": self.op_timeout,
            "ping_interval": self.ping_interval,
            "max_outstanding_pings": 2,
            "pending_size": 0,  # never buffer publishes during an outage: no late replay
            "error_cb": self._on_client_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            **self.connect_options,
        }
        return await nats.connect(self.servers, **options)

    async def flush(self) -> None:
        """Wait until everything published so far has reached the NATS server.

        Bounded by ``op_timeout`` (and by the registry's ``drain_timeout``);
        a failure is counted in ``detail["flush_failures"]``.
        """
        client = self._client
        if client is None or not client.is_connected:
            return
        try:
            await client.flush(timeout=self.op_timeout)  # type: ignore[arg-type]
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as exc:
            self._stats["flush_failures"] += 1
            self._error(exc, "flush failed")

    async def aclose(self) -> None:
        """Remove this node's presence, stop the tasks and close the connection. Idempotent.

        May be cancelled: the connection is then closed in the background.
        """
        client, self._client = self._client, None
        if client is None:
            return
        interest, self._interest = self._interest, None
        presence, self._presence = self._presence, None
        barrier, self._barrier = self._barrier, None
        tasks, self._tasks = self._tasks, []
        if presence is not None:
            presence.stop()
        for task in tasks:
            task.cancel()
        if barrier is not None:
            barrier.close()
        if interest is not None:
            interest.close()
        try:
            if tasks:
                _, stuck = await asyncio.wait(tasks, timeout=self.op_timeout)
                if stuck:
                    logger.error("%d nats backend tasks did not stop", len(stuck))
            if presence is not None and client.is_connected:
                await asyncio.wait_for(presence.leave(), self.op_timeout)
        except Exception as exc:
            logger.info("could not remove the nats presence of this node: %r", exc)
        finally:
            closing = asyncio.ensure_future(_close_client(client, self.op_timeout))
            _CLOSING.add(closing)
            closing.add_done_callback(_CLOSING.discard)
            self._node = None
            await asyncio.shield(closing)
            self._notify_state()

    async def _supervise(self, presence: Presence) -> None:
        """Run the presence writer: log, count and restart it if it fails."""
        failures = 0
        while not presence.stopped:
            try:
                await presence.run()
                if presence.stopped:
                    return
                raise RuntimeError("presence writer returned")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._stats["task_failures"] += 1
                self._error(exc, "presence writer failed")
                logger.exception("nats presence writer failed; restarting it")
                presence.resync()
            await asyncio.sleep(self._backoff(failures))
            failures += 1

    def _backoff(self, attempt: int) -> float:
        delay = min(5.0, 0.1 * 2 ** min(attempt, 10))
        return random.uniform(delay / 2, delay)

    # -- client callbacks --------------------------------------------------------------

    async def _on_client_error(self, exc: Exception) -> None:
        self._error(exc, "")
        if self._node is not None:
            self._node.backend_error()
        logger.warning("nats client error: %r", exc)

    async def _on_disconnected(self) -> None:
        if self._client is None:
            return
        self._error(None, "disconnected from nats")
        if self._node is not None:
            self._node.backend_error()
        logger.warning("disconnected from nats; reconnecting")
        self._notify_state()

    async def _on_reconnected(self) -> None:
        self._reconnects += 1
        client = self._client
        url = client.connected_url.netloc if client is not None and client.connected_url else "?"
        logger.warning("reconnected to nats at %s; re-asserting presence", url)
        if self._presence is not None:
            self._presence.resync()
        self._notify_state()

    # -- publishing --------------------------------------------------------------------

    async def publish(self, envelope: Envelope) -> None:
        """Publish ``envelope`` to its subject; returns once nats-py has buffered it.

        Raises:
            BackendUnavailable: not connected to NATS (nothing is buffered for
                later: delivery is at-most-once across an outage).
        """
        client = self._client
        if client is None or not client.is_connected:
            self._stats["rejected"] += 1
            raise BackendUnavailable("nats", "not connected; delivered locally only")
        data = wire.pack(envelope, self._origin)
        if len(data) > client.max_payload:
            self._stats["oversized"] += 1
            self._error(None, f"{len(data)}-byte message exceeds the server's max_payload")
            logger.warning(
                "not publishing a %d-byte message (server max_payload=%d); delivered locally only",
                len(data),
                client.max_payload,
            )
            return
        try:
            await client.publish(self._layout.subject_of(envelope), data)
        except (nats.errors.Error, OSError) as exc:
            self._stats["publish_failures"] += 1
            self._error(exc, "")
            raise BackendUnavailable("nats", f"publish failed: {exc!r}") from exc
        self._stats["published"] += 1

    # -- receiving ---------------------------------------------------------------------

    def _on_message(self, msg: Msg) -> None:
        subject = msg.subject
        barrier = self._barrier
        if subject == self._layout.sync:
            if barrier is not None:
                barrier.on_request(msg)
            return
        if subject == self._replies:
            if barrier is not None:
                barrier.on_answer(msg.data)
            return
        data = msg.data
        stats = self._stats
        stats["received"] += 1
        try:
            if wire.peek(data)[1] == self._origin:
                stats["own"] += 1
                return
            envelope = wire.unpack(data)
        except wire.WireError as exc:
            stats["malformed"] += 1
            logger.debug("ignoring a malformed nats message: %s", exc)
            return
        node = self._node
        if node is None:
            return
        stats["processed"] += 1
        try:
            delivered = node.deliver(envelope)
        except Exception as exc:
            self._error(exc, "")
            logger.exception("delivering a remote envelope failed")
            return
        stats["delivered" if delivered else "unmatched"] += 1

    # -- membership --------------------------------------------------------------------

    async def connection_added(self, connection_id: str, key: Key, *, first_of_key: bool) -> None:
        """Subscribe to the key's subject and publish the connection's presence entry.

        Waits (up to ``op_timeout``) until the subscription is confirmed and the
        entry acknowledged by JetStream, also for a concurrent second
        connection of the key; returns at once while disconnected (the
        reconnect re-asserts everything). Never raises for NATS failures.
        """
        interest, presence = self._interest, self._presence
        if interest is None or presence is None:
            await asyncio.sleep(0)
            return
        written = presence.add(connection_id, key)
        await interest.want(self._layout.key_subject(key))
        if self.connected:
            try:
                await asyncio.wait_for(written.wait(), self.op_timeout)
            except asyncio.TimeoutError:
                self._error(None, "presence not written within op_timeout")

    def connection_removed(self, connection_id: str, key: Key, *, last_of_key: bool) -> None:
        """Withdraw presence; unsubscribe after the key's last connection. Never blocks."""
        interest, presence = self._interest, self._presence
        if presence is not None:
            presence.remove(connection_id, key)
        if interest is not None:
            interest.unwant(self._layout.key_subject(key))

    async def group_joined(self, group: str, *, first_of_group: bool) -> None:
        """Subscribe to the group's subject (waits until confirmed, as above)."""
        interest = self._interest
        if interest is None:
            await asyncio.sleep(0)
            return
        await interest.want(self._layout.group_subject(group))

    def group_left(self, group: str, *, last_of_group: bool) -> None:
        """Unsubscribe after the group's last local member. Never blocks."""
        interest = self._interest
        if interest is not None:
            interest.unwant(self._layout.group_subject(group))

    # -- presence ----------------------------------------------------------------------

    async def presence_count(self, key: Key) -> int:
        """Live connections of ``key`` on nodes whose lease is live (one round trip).

        Raises:
            BackendUnavailable: NATS cannot answer.
        """
        return int(await self._read(lambda presence: presence.count(key)))

    async def online_keys(self) -> frozenset[Key]:
        """Every key with a connection on a live node (one round trip, O(online connections)).

        Raises:
            BackendUnavailable: NATS cannot answer.
        """
        keys: frozenset[Key] = await self._read(lambda presence: presence.keys())
        return keys

    async def _read(self, read: Callable[[Presence], Any]) -> Any:
        presence = self._presence
        if presence is None:
            raise BackendUnavailable("nats", "the backend is not running")
        try:
            return await read(presence)
        except Exception as exc:
            if isinstance(exc, BackendUnavailable):
                raise
            self._error(exc, "")
            raise BackendUnavailable("nats", f"presence read failed: {exc}") from exc

    # -- health ------------------------------------------------------------------------

    def _error(self, exc: BaseException | None, detail: str) -> None:
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

        ``detail`` holds: ``namespace``, ``node``, ``server`` (the connected
        URL), ``subscriptions`` (subjects subscribed), ``published``,
        ``publish_failures``, ``rejected`` (``publish`` raised while
        disconnected), ``oversized``, ``received`` (messages read),
        ``processed`` (envelopes handed to the registry: the measure of interest
        routing), ``delivered``/``unmatched``, ``own`` (own envelopes dropped),
        ``malformed``, ``stale`` (messages that reached a subscription being
        removed), ``flush_failures``, ``task_failures``, the presence writer's
        ``resyncs``, ``lease_lost``, ``reaped`` (crashed nodes cleaned up) and
        ``presence_failures``, the subscription barrier's ``syncs`` and
        ``sync_timeouts`` (NATS clusters only), ``last_error`` and ``since`` (time of the last
        state change).
        """
        client, interest, presence = self._client, self._interest, self._presence
        barrier = self._barrier
        url = client.connected_url if client is not None else None
        detail: dict[str, Any] = {
            "namespace": self.namespace,
            "node": self._node.node_id if self._node is not None else None,
            "server": url.netloc if url is not None else None,
            "subscriptions": len(interest) if interest is not None else 0,
            **self._stats,
            "stale": interest.stale if interest is not None else 0,
            **(presence.stats if presence is not None else {}),
            **(barrier.stats if barrier is not None else {}),
            "last_error": self._last_error,
            "since": self._last_change,
        }
        return BackendHealth(
            name="nats",
            connected=self.connected,
            errors=self._errors,
            reconnects=self._reconnects,
            detail=detail,
        )


async def _close_client(client: Client, timeout: float) -> None:
    """Close ``client`` and leave none of its tasks behind.

    nats-py's ``close`` writes commands buffered while disconnected to the dead
    socket and stops at the error, before cancelling subscription tasks: drop
    that buffer first, and cancel what is left after.
    """
    subs = list(getattr(client, "_subs", {}).values())
    if not client.is_connected and hasattr(client, "_pending"):
        client._pending = []
        client._pending_data_size = 0
    try:
        await asyncio.wait_for(client.close(), timeout)
    except Exception as exc:
        logger.info("closing the nats connection: %r", exc)
    finally:
        for sub in subs:
            task = getattr(sub, "_wait_for_msgs_task", None)
            if task is not None and not task.done():
                task.cancel()


def _check_seconds(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
