"""The transport contract (:func:`wsregistry.contracts.check_transport`) on the testing
transports, and transports broken on purpose that it must reject."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from tests.helpers import TIMEOUT
from wsregistry.contracts import ConnectedTransport, check_transport
from wsregistry.testing import FailingTransport, RecordingTransport

pytestmark = pytest.mark.anyio


def reader(transport: RecordingTransport) -> ConnectedTransport:
    """A recording transport is its own peer: ``receive`` reads its frames one by one."""
    read = 0

    async def receive() -> str | bytes:
        nonlocal read
        frames = await transport.wait_for(read + 1)
        read += 1
        return frames[read - 1]

    async def wait_closed() -> int | None:
        return await transport.wait_closed()

    return ConnectedTransport(transport=transport, receive=receive, wait_closed=wait_closed)


@pytest.mark.parametrize("nowait", [False, True], ids=["queued", "nowait"])
async def test_recording_transport_keeps_the_contract(nowait: bool) -> None:
    @asynccontextmanager
    async def connected() -> AsyncIterator[ConnectedTransport]:
        transport = FailingTransport(fail_after=10**9, nowait=nowait)

        async def break_peer() -> None:
            transport.fail_after = 0

        yield ConnectedTransport(
            transport=transport,
            receive=reader(transport).receive,
            wait_closed=reader(transport).wait_closed,
            break_peer=break_peer,
        )

    await check_transport(connected, check_timeout=TIMEOUT)


class Reordering(RecordingTransport):
    """Broken on purpose: holds each even frame back and writes it after the next one."""

    def __init__(self) -> None:
        super().__init__()
        self._held: str | bytes | None = None

    async def send(self, data: str | bytes) -> None:
        if self._held is None:
            self._held = data
            await anyio.lowlevel.checkpoint()
            return
        held, self._held = self._held, None
        await super().send(data)
        await super().send(held)


class CloseOnce(RecordingTransport):
    """Broken on purpose: a second ``close`` raises."""

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            raise RuntimeError("already closed")
        await super().close(code, reason)


class TextOnly(RecordingTransport):
    """Broken on purpose: sends bytes as text."""

    async def send(self, data: str | bytes) -> None:
        await super().send(data.decode("latin-1") if isinstance(data, bytes) else data)


class NeverFails(RecordingTransport):
    """Broken on purpose: swallows sends after the peer went away."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    async def send(self, data: str | bytes) -> None:
        if not self.broken:
            await super().send(data)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (Reordering, r"frames_arrive_as_sent_and_in_order: frame 0 of 10: expected text 'hello'"),
        (CloseOnce, r"close_is_idempotent: close\(\) raised RuntimeError"),
        (TextOnly, r"frames_arrive_as_sent_and_in_order: frame 1 of 10: expected binary"),
    ],
    ids=["reorders", "raises-on-second-close", "bytes-as-text"],
)
async def test_a_broken_transport_fails(make: type[RecordingTransport], message: str) -> None:
    @asynccontextmanager
    async def connected() -> AsyncIterator[ConnectedTransport]:
        yield reader(make())

    with pytest.raises(AssertionError, match=message):
        await check_transport(connected, check_timeout=TIMEOUT)


async def test_a_transport_that_never_raises_fails() -> None:
    @asynccontextmanager
    async def connected() -> AsyncIterator[ConnectedTransport]:
        transport = NeverFails()

        async def break_peer() -> None:
            transport.broken = True

        yield ConnectedTransport(
            transport=transport, receive=reader(transport).receive, break_peer=break_peer
        )

    with pytest.raises(AssertionError, match=r"broken_peer_makes_send_raise: did not finish"):
        await check_transport(connected, check_timeout=0.5)


async def test_a_bad_send_nowait_fails() -> None:
    class Unsure(RecordingTransport):
        def send_nowait(self, data: str | bytes) -> bool:
            self._record(data)
            return "yes"  # type: ignore[return-value]

    @asynccontextmanager
    async def connected() -> AsyncIterator[ConnectedTransport]:
        yield reader(Unsure())

    with pytest.raises(AssertionError, match=r"send_nowait returned 'yes'"):
        await check_transport(connected, check_timeout=TIMEOUT)
