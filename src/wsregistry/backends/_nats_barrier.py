"""The NATS backend's subscription barrier: proof that a new subscription reached the cluster.

In a NATS cluster, the server a node is connected to tells the other servers
about a new subscription asynchronously, over its routes; its ``PONG`` proves
only that it has the subscription itself. A publisher on another server may
for a moment not reach the node yet, which would break "after
``connection_added`` returns, the connection is reachable from every node".

A barrier round publishes a request on ``ns.s`` (every node subscribes to it)
with the reply subject ``ns.r.<node>``; every other node answers at once. A
route carries our subscriptions before our later request, so an answer from a
node proves that the node's server knows every subscription we made before the
round started. :meth:`Barrier.wait` returns once every other live node (by
lease) has answered, or after :data:`ROUND_TIMEOUT`; nodes that missed a round
are not waited for again until they answer (a crashed node keeps its lease for
up to ``presence_timeout``). Concurrent callers share rounds: a caller joins
the next round that has not started yet. A single server needs no barrier, so
none is run unless the server reports a cluster.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg

logger = logging.getLogger("wsregistry")

ROUND_TIMEOUT = 1.0
"""Seconds one round waits for the other nodes' answers."""


class _Round:
    __slots__ = ("done", "expected")

    def __init__(self, expected: set[str]) -> None:
        self.expected = expected
        self.done = asyncio.Event()

    def answered(self, node: str) -> None:
        self.expected.discard(node)
        if not self.expected:
            self.done.set()


class Barrier:
    """Subscription barriers of one node (see the module docstring)."""

    def __init__(
        self,
        client: Client,
        *,
        request_subject: str,
        reply_subject: str,
        node: str,
        live_nodes: Callable[[], Awaitable[set[str]]],
        on_error: Callable[[BaseException | None, str], None],
        timeout: float,
    ) -> None:
        self._client = client
        self._request_subject = request_subject
        self._reply_subject = reply_subject
        self._me = node
        self._live_nodes = live_nodes
        self._on_error = on_error
        self._timeout = timeout
        self._lock = asyncio.Lock()
        self._next: asyncio.Future[None] | None = None
        self._rounds: dict[bytes, _Round] = {}
        self._unresponsive: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ready = False
        """Set once this node's own barrier subjects are subscribed (rounds before are skipped)."""
        self.stats: dict[str, int] = {"syncs": 0, "sync_timeouts": 0}

    def _clustered(self) -> bool:
        info = getattr(self._client, "_server_info", None)
        return bool(isinstance(info, dict) and info.get("cluster"))

    async def wait(self) -> None:
        """Return once every other live node's server knows our subscriptions so far.

        Never raises for NATS failures; bounded by ``timeout`` + :data:`ROUND_TIMEOUT`.
        """
        client = self._client
        if not self.ready or not client.is_connected or not self._clustered():
            return
        future = self._next
        if future is None:
            future = self._next = asyncio.get_running_loop().create_future()
            self._spawn(self._round(future))
        try:
            await asyncio.wait_for(asyncio.shield(future), self._timeout + ROUND_TIMEOUT)
        except asyncio.TimeoutError:
            self._on_error(None, "subscription barrier timed out")

    async def _round(self, future: asyncio.Future[None]) -> None:
        try:
            async with self._lock:
                if self._next is future:
                    self._next = None  # later callers need a later round
                await self._run_round()
        except Exception as exc:
            self._on_error(exc, "subscription barrier failed")
        finally:
            if not future.done():
                future.set_result(None)

    async def _run_round(self) -> None:
        expected = await self._live_nodes() - {self._me} - self._unresponsive
        if not expected:
            return
        token = uuid.uuid4().hex.encode("ascii")
        round_ = self._rounds[token] = _Round(set(expected))
        self.stats["syncs"] += 1
        try:
            await self._client.publish(self._request_subject, token, reply=self._reply_subject)
            await asyncio.wait_for(round_.done.wait(), ROUND_TIMEOUT)
        except asyncio.TimeoutError:
            self.stats["sync_timeouts"] += 1
            self._unresponsive.update(round_.expected)
            logger.info("%d nodes did not answer a subscription barrier", len(round_.expected))
        finally:
            self._rounds.pop(token, None)

    def on_request(self, msg: Msg) -> None:
        """Answer another node's round (from the reader task; never blocks)."""
        if msg.reply:
            answer = msg.data + b" " + self._me.encode("ascii")
            self._spawn(self._answer(msg.reply, answer))

    async def _answer(self, subject: str, data: bytes) -> None:
        try:
            await self._client.publish(subject, data)
        except Exception as exc:  # the asker times out and stops waiting for us
            logger.debug("answering a subscription barrier failed: %r", exc)

    def on_answer(self, data: bytes) -> None:
        """Count another node's answer to one of our rounds."""
        token, _, node = data.partition(b" ")
        name = node.decode("ascii", "replace")
        self._unresponsive.discard(name)
        round_ = self._rounds.get(token)
        if round_ is not None:
            round_.answered(name)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop: release waiters and cancel background work."""
        self.ready = False
        for round_ in self._rounds.values():
            round_.done.set()
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
