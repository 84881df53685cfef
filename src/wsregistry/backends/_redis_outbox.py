"""The Redis backend's outbox and its one writer task (the publisher).

``publish`` appends a typed item to the outbox and returns; one writer task
sends the outbox in call order, batched into pipelines, so a publisher's order
holds and nothing is retried (a retried publish could deliver twice). Presence
changes ride along in the same pipelines (see ``_redis_presence``).

**Adaptive batching.** When the writer wakes after being idle, or finds at most
one message queued behind the pipeline it just sent, it sends at once: a lone
message is never delayed. When two or more messages were queued while the
previous pipeline was in flight (messages come faster than one per round trip:
load), it lingers up to ``linger`` seconds, or until :data:`BATCH_TARGET` items
wait, to fill a bigger pipeline (fewer round trips, far less CPU in Redis and in both
processes). A flush mark (``flush()``, a connect waiting for its presence)
ends a linger at once. So a message waits for the writer at most
``linger`` plus the pipeline already in flight.

**Failures.** A pipeline that fails loses its publishes (counted in
``publish_failures``, never replayed: at-most-once across an outage); the
publishes still queued are dropped and counted too, ``publish`` rejects new
ones until a presence rewrite succeeds (with backoff), and flush marks resolve
``False``. An error while *building* a batch (a broken ``LocalNode``) is
logged and counted; the batch's publishes still go out and its marks resolve.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BackendUnavailable
from . import _redis_wire as wire
from ._redis_health import Backoff, Counters
from ._redis_presence import BROKEN, Presence

if TYPE_CHECKING:
    import redis.asyncio as aioredis

logger = logging.getLogger("wsregistry")

MAX_BATCH = 2048
"""Most outbox items in one pipeline."""

BATCH_TARGET = 128
"""A linger ends as soon as this many items wait."""


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``data`` on ``channel`` (a key, group or broadcast channel)."""

    channel: str
    data: bytes


@dataclass(frozen=True, slots=True)
class PublishToConnection:
    """Publish ``data`` to the node holding connection ``connection_id`` (one script)."""

    connection_id: str
    data: bytes


class FlushMark:
    """Resolved once everything queued before it was handed to Redis (``True``) or lost."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def resolve(self, ok: bool) -> None:
        """Resolve the mark (idempotent)."""
        if not self.done.done():
            self.done.set_result(ok)


OutboxItem = Publish | PublishToConnection | FlushMark


class Publisher:
    """The outbox and the writer loop.

    Args:
        client: the command client.
        presence: this node's presence bookkeeping (written in the same pipelines).
        counters: where to count.
        linger: the longest wait for a fuller batch under load (seconds; 0: never).
        max_pending: most publishes queued; beyond it :meth:`publish` raises.
        backoff: retry delays after a failure.
        on_state: called when :attr:`ok` changes.
        on_error: called once per failure (the registry counts a backend error).
    """

    def __init__(
        self,
        client: aioredis.Redis,
        presence: Presence,
        counters: Counters,
        *,
        linger: float,
        max_pending: int,
        backoff: Backoff,
        on_state: Callable[[], None],
        on_error: Callable[[], None],
    ) -> None:
        self.client = client
        self.presence = presence
        self.counters = counters
        self.linger = linger
        self.max_pending = max_pending
        self.ok = False  # the last command succeeded: publishes are accepted
        self.closing = False
        self.pending = 0  # publishes in the outbox
        self.in_flight = 0  # publishes in the pipeline being executed
        self._outbox: deque[OutboxItem] = deque()
        self._wake = asyncio.Event()
        self._backoff = backoff
        self._on_state = on_state
        self._on_error = on_error
        self._loaded = False  # >= 2 items were queued while the last pipeline was in flight
        self._lingering: asyncio.Future[None] | None = None

    # -- producers (never block) -------------------------------------------------------

    def publish(self, item: Publish | PublishToConnection) -> None:
        """Queue a publish.

        Raises:
            BackendUnavailable: commands are failing, the backend is closing, or
                ``max_pending`` publishes wait. Nothing is queued then.
        """
        if not self.ok or self.closing:
            self.counters.rejected += 1
            raise BackendUnavailable("redis", "not connected; delivered locally only")
        if self.pending >= self.max_pending:
            self.counters.rejected += 1
            raise BackendUnavailable("redis", f"{self.max_pending} publishes already pending")
        outbox = self._outbox
        outbox.append(item)
        self.pending += 1
        lingering = self._lingering
        if lingering is not None and len(outbox) >= BATCH_TARGET and not lingering.done():
            lingering.set_result(None)
        self._wake.set()

    def mark(self) -> FlushMark:
        """Queue a flush mark (ends a linger: whoever waits for it should not wait longer)."""
        mark = FlushMark()
        self._outbox.append(mark)
        lingering = self._lingering
        if lingering is not None and not lingering.done():
            lingering.set_result(None)
        self._wake.set()
        return mark

    def wake(self) -> None:
        """Make the writer look at presence changes or a requested rewrite."""
        self._wake.set()

    # -- the writer --------------------------------------------------------------------

    async def run(self) -> None:
        """Write forever (cancel to stop)."""
        presence = self.presence
        while True:
            if presence.needs_resync:
                ok = await self._resync()
            elif self._outbox or presence.dirty:
                await self._linger()
                ok = await self._write_batch()
            else:
                self._wake.clear()
                await self._wake.wait()
                continue
            if ok:
                self._backoff.reset()
            else:
                await asyncio.sleep(self._backoff.next_delay())

    async def _linger(self) -> None:
        if not self._loaded or self.linger <= 0 or len(self._outbox) >= BATCH_TARGET:
            return
        if any(type(item) is FlushMark for item in self._outbox):
            return
        loop = asyncio.get_running_loop()
        lingering: asyncio.Future[None] = loop.create_future()
        self._lingering = lingering
        timer = loop.call_later(self.linger, _resolve, lingering)
        try:
            await lingering
        finally:
            timer.cancel()
            self._lingering = None
        self.counters.lingered += 1

    async def _write_batch(self) -> bool:
        outbox, layout = self._outbox, self.presence.layout
        pipe = self.client.pipeline(transaction=False)
        marks: list[FlushMark] = []
        publishes = 0
        for _ in range(min(len(outbox), MAX_BATCH)):
            item = outbox.popleft()
            if type(item) is Publish:
                pipe.publish(item.channel, item.data)
                publishes += 1
            elif type(item) is PublishToConnection:
                pipe.eval(
                    wire.TO_CONNECTION,
                    2,
                    layout.conns,
                    layout.nodes,
                    item.connection_id,
                    layout.prefix,
                    item.data,
                )
                publishes += 1
            else:
                marks.append(item)  # type: ignore[arg-type]
        self.pending -= publishes
        self.in_flight = publishes
        try:
            try:
                self.presence.write_into(pipe)
            except Exception as exc:  # a broken LocalNode: the rewrite retries it
                self.counters.error(exc)
                logger.exception("building a presence update failed; rewriting presence")
            results = await pipe.execute(raise_on_error=False) if len(pipe) else []
        except BROKEN as exc:
            self.in_flight = 0
            self._failed(exc, lost=publishes)
            for mark in marks:
                mark.resolve(False)
            return False
        # (cancelled: ``in_flight`` stays, :meth:`drop_all` counts it as lost)
        self.in_flight = 0
        self.counters.published += publishes
        self.counters.batches += 1
        for result in results:
            if isinstance(result, Exception):
                self.counters.error(result)
                logger.warning("redis command failed: %r", result)
        for mark in marks:
            mark.resolve(True)
        self._loaded = len(outbox) >= 2  # faster than one message per round trip: load
        self._set_ok(True)
        return True

    async def _resync(self) -> bool:
        """Rewrite this node's whole presence (after start, reconnects, a lost lease)."""
        pipe = self.client.pipeline(transaction=True)
        try:
            generation = self.presence.resync_into(pipe)
        except Exception as exc:  # a broken LocalNode
            self.counters.error(exc)
            logger.exception("building the presence rewrite failed; retrying")
            return False
        try:
            await pipe.execute()
        except BROKEN as exc:
            self._failed(exc, lost=0)
            return False
        self.presence.resync_done(generation)
        self.counters.resyncs += 1
        self._set_ok(True)
        return True

    # -- failures and closing ----------------------------------------------------------

    def failed(self, exc: BaseException) -> None:
        """A command failed elsewhere (heartbeat): behave as if a pipeline had failed."""
        self._failed(exc, lost=0)
        self._wake.set()

    def _failed(self, exc: BaseException, *, lost: int) -> None:
        lost += self._drop_queued()
        self.counters.publish_failures += lost
        self.counters.error(exc)
        self.presence.request_resync()
        self._on_error()
        logger.warning("redis command failed (%d publishes lost): %r", lost, exc)
        self._set_ok(False)

    def _drop_queued(self) -> int:
        """Drop queued publishes (at-most-once: never replayed late); resolve marks ``False``."""
        dropped = 0
        for item in self._outbox:
            if type(item) is FlushMark:
                item.resolve(False)
            else:
                dropped += 1
        self._outbox.clear()
        self.pending = 0
        return dropped

    def drop_all(self) -> int:
        """At close: count every publish not confirmed by Redis as lost; returns how many."""
        lost = self._drop_queued() + self.in_flight
        self.in_flight = 0
        self.counters.publish_failures += lost
        return lost

    def _set_ok(self, ok: bool) -> None:
        if ok is not self.ok:
            self.ok = ok
            self._on_state()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
