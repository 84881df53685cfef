"""Test transports the core tests need beyond :mod:`wsregistry.testing`."""

from __future__ import annotations

import anyio

from wsregistry.testing import RecordingTransport


class GatedTransport(RecordingTransport):
    """A transport whose fast path and slow path the test switches at will.

    ``send_nowait`` accepts while ``nowait_open`` is true; ``send`` waits for the
    gate to be open. Frames from both paths land in ``sent`` in arrival order, and
    ``via`` records which path carried each one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.nowait_open = True
        self.via: list[str] = []
        self._gate = anyio.Event()
        self._gate.set()

    def close_gate(self) -> None:
        if self._gate.is_set():
            self._gate = anyio.Event()

    def open_gate(self) -> None:
        self._gate.set()

    def send_nowait(self, data: str | bytes) -> bool:
        if not self.nowait_open:
            return False
        self.via.append("nowait")
        self._record(data)
        return True

    async def send(self, data: str | bytes) -> None:
        await self._gate.wait()
        self.via.append("send")
        await super().send(data)


class NullTransport:
    """Accepts everything, keeps nothing: for churn and memory tests."""

    __slots__ = ("closed_with",)

    def __init__(self) -> None:
        self.closed_with: int | None = None

    async def send(self, data: str | bytes) -> None:
        await anyio.lowlevel.checkpoint()

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = code
        await anyio.lowlevel.checkpoint()


class SlowTransport(RecordingTransport):
    """Every send takes ``delay`` seconds (a slow but live peer)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def send(self, data: str | bytes) -> None:
        await anyio.sleep(self.delay)
        await super().send(data)


class InstantTransport(RecordingTransport):
    """``send`` completes without ever yielding (a socket whose buffer has room)."""

    async def send(self, data: str | bytes) -> None:
        self._record(data)
