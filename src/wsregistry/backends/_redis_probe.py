"""The Redis backend's receiving side: decoding what the link reads, and the liveness probe.

:class:`Receiver` turns each message the subscription link reads into an
envelope for the registry; it drops the node's own publishes (by origin id:
the registry delivered them locally already) and hands probe replies to the
:class:`Probe`.

:class:`Probe` publishes a token to the node's own channel every
``probe_interval``. A link that is connected but deaf (Redis has no subscriber
on our channel, or the link read nothing at all while the probe was due) is
rebuilt; a link that is merely busy reading a backlog is left alone (a rebuild
would lose messages). Detection takes at most ``probe_interval + probe_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING

import anyio

from . import _redis_wire as wire
from ._redis_presence import BROKEN

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ._redis_health import Counters
    from ._redis_listener import Listener
    from .base import LocalNode

logger = logging.getLogger("wsregistry")


class Probe:
    """Liveness probes of the subscription link."""

    def __init__(
        self,
        client: aioredis.Redis,
        listener: Listener,
        counters: Counters,
        *,
        channel: str,
        origin: bytes,
        interval: float,
        timeout: float,
    ) -> None:
        self.client = client
        self.listener = listener
        self.counters = counters
        self.channel = channel
        self.origin = origin
        self.interval = interval
        self.timeout = timeout
        self._waiting: dict[str, asyncio.Event] = {}

    def answered(self, token: str) -> None:
        """A probe came back through the link."""
        event = self._waiting.pop(token, None)
        if event is not None:
            event.set()

    async def run(self) -> None:
        """Probe every ``interval`` while the link is up (cancel to stop)."""
        listener = self.listener
        while True:
            await asyncio.sleep(self.interval)
            if not listener.up:
                continue
            token = uuid.uuid4().hex
            event = asyncio.Event()
            self._waiting[token] = event
            self.counters.probes += 1
            try:
                deaf = await self._once(token, event)
            except (*BROKEN, TimeoutError) as exc:
                self.counters.error(exc)  # Redis itself is unreachable: not the link's fault
                continue
            finally:
                self._waiting.pop(token, None)
            if deaf:
                self.counters.probe_failures += 1
                logger.warning("redis subscription link is deaf (probe not received); rebuilding")
                listener.rebuild("liveness probe failed")

    async def _once(self, token: str, event: asyncio.Event) -> bool:
        """Publish one probe; ``True`` if the link is deaf."""
        listener = self.listener
        reads = listener.reads
        with anyio.fail_after(self.timeout):
            receivers = await self.client.publish(self.channel, wire.pack_probe(self.origin, token))
        if not receivers:
            return True  # Redis says nobody listens on our channel
        with anyio.move_on_after(self.timeout):
            await event.wait()
            return False
        if listener.reads > reads:
            self.counters.probes_late += 1
            return False
        return True


class Receiver:
    """What the link reads, decoded and handed to the registry."""

    def __init__(self, node: LocalNode, counters: Counters, probe: Probe | None = None) -> None:
        self.node = node
        self.counters = counters
        self.origin = node.node_id.encode("utf-8")
        self.probe = probe

    def __call__(self, data: bytes) -> None:
        """Handle one published message (sync, never raises)."""
        counters = self.counters
        counters.received += 1
        try:
            kind, origin = wire.peek(data)
            if origin == self.origin:
                counters.own += 1
                if kind == wire.PROBE and self.probe is not None:
                    self.probe.answered(wire.probe_token(data))
                return
            if kind == wire.PROBE:
                return
            envelope = wire.unpack(data)
        except wire.WireError as exc:
            counters.malformed += 1
            logger.debug("ignoring a malformed message: %s", exc)
            return
        counters.processed += 1
        try:
            delivered = self.node.deliver(envelope)
        except Exception as exc:
            counters.error(exc)
            logger.exception("delivering a remote envelope failed")
            return
        if delivered:
            counters.delivered += 1
        else:
            counters.unmatched += 1
