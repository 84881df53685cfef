"""Transports for testing code that uses a registry, without a network.

* :class:`RecordingTransport` keeps every frame it is sent.
* :class:`StallingTransport` never finishes a send until released (a peer that
  stopped reading).
* :class:`FailingTransport` raises on send after a number of frames (a peer that
  vanished).

All three record the close code and reason. They are plain
:class:`~wsregistry.Transport` implementations, so they also show how little a
transport needs.
"""

from __future__ import annotations

import json
from typing import Any

import anyio

__all__ = ["FailingTransport", "RecordingTransport", "StallingTransport", "TransportBroken"]


class TransportBroken(ConnectionError):
    """What :class:`FailingTransport` raises: the socket is gone."""


class RecordingTransport:
    """Records every frame; optionally offers the non-blocking fast path.

    Args:
        nowait: offer ``send_nowait`` (writes synchronously, like a socket whose
            buffer has room).

    Attributes:
        sent: every frame in the order received.
        close_code: the code of the first ``close`` call, ``None`` while open.
        close_reason: the reason of the first ``close`` call.
    """

    def __init__(self, *, nowait: bool = False) -> None:
        self.sent: list[str | bytes] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._changed: anyio.Event | None = None
        if nowait:
            self.send_nowait = self._send_nowait

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sent={len(self.sent)} close_code={self.close_code}>"

    @property
    def closed(self) -> bool:
        """Whether ``close`` was called."""
        return self.close_code is not None

    def messages(self) -> list[Any]:
        """The frames, with JSON text decoded (other text as ``str``, binary as ``bytes``)."""
        return [_decode(frame) for frame in self.sent]

    async def send(self, data: str | bytes) -> None:
        """Record ``data``."""
        if self.closed:
            raise TransportBroken("send on a closed transport")
        self._record(data)
        await anyio.lowlevel.checkpoint()

    def _send_nowait(self, data: str | bytes) -> bool:
        if self.closed:
            raise TransportBroken("send on a closed transport")
        self._record(data)
        return True

    async def close(self, code: int, reason: str) -> None:
        """Record the first close."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self._notify()
        await anyio.lowlevel.checkpoint()

    async def wait_for(self, count: int) -> list[str | bytes]:
        """Wait until at least ``count`` frames arrived (bound it with ``anyio.fail_after``)."""
        while len(self.sent) < count:
            await self._wait_changed()
        return self.sent

    async def wait_closed(self) -> int:
        """Wait until ``close`` is called; returns the close code."""
        while self.close_code is None:
            await self._wait_changed()
        return self.close_code

    def _record(self, data: str | bytes) -> None:
        self.sent.append(data)
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_changed(self) -> None:
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()


class StallingTransport(RecordingTransport):
    """A peer that stopped reading: ``send`` blocks until :meth:`release`.

    ``close`` also blocks while stalled (a full socket cannot take a close
    frame); ``abort`` ends it at once, as a real transport drops the TCP link.

    Attributes:
        aborted: whether ``abort`` was called.
    """

    def __init__(self) -> None:
        super().__init__()
        self._released = anyio.Event()
        self.aborted = False

    def release(self) -> None:
        """Let blocked and future sends through."""
        self._released.set()

    async def send(self, data: str | bytes) -> None:
        """Wait until released, then record."""
        await self._released.wait()
        await super().send(data)

    async def close(self, code: int, reason: str) -> None:
        """Wait until released (or aborted), then record the close."""
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        await self._released.wait()
        self._notify()

    def abort(self) -> None:
        """Drop the connection: releases every waiter."""
        self.aborted = True
        self._released.set()


class FailingTransport(RecordingTransport):
    """A peer that vanishes: the send after ``fail_after`` frames raises.

    Args:
        fail_after: frames accepted before sends raise :class:`TransportBroken`.
        nowait: offer the fast path (which fails the same way).
    """

    def __init__(self, *, fail_after: int = 0, nowait: bool = False) -> None:
        super().__init__(nowait=nowait)
        self.fail_after = fail_after

    def _record(self, data: str | bytes) -> None:
        if len(self.sent) >= self.fail_after:
            raise TransportBroken("peer went away")
        super()._record(data)


def _decode(frame: str | bytes) -> Any:
    if isinstance(frame, bytes):
        return frame
    try:
        return json.loads(frame)
    except ValueError:
        return frame
