"""The contract every :class:`~wsregistry.Transport` keeps, as an async checker.

:func:`check_transport` takes a factory of :class:`ConnectedTransport` — your
transport, connected to a real peer, with a way to read what the peer received
— and checks what the registry relies on: frames arrive as sent (text for
``str``, binary for ``bytes``) and in order, also when a registry drives the
transport; ``close`` is idempotent; the optional ``send_nowait`` returns a
``bool`` and keeps order when mixed with ``send``; and a transport whose peer
went away raises on send, so the registry unregisters the connection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import anyio

from ..codes import CloseCode
from ..registry import Registry
from ..transport import SupportsSendNowait, Transport
from ._common import run_checks

__all__ = ["ConnectedTransport", "MakeTransport", "check_transport"]


@dataclass(frozen=True)
class ConnectedTransport:
    """Your transport and its peer, for one check.

    Attributes:
        transport: the transport under test, on an open connection.
        receive: waits for the next frame the peer received and returns it:
            ``str`` for a text frame, ``bytes`` for a binary frame.
        wait_closed: optional; waits until the peer saw the connection close
            and returns the close code it received (``None`` if none). When
            given, the close code of ``close`` is checked end to end.
        break_peer: optional; makes the peer go away (drop the TCP connection,
            kill the client). When given, the checker proves that ``send``
            then raises and the registry unregisters the connection.
    """

    transport: Transport
    receive: Callable[[], Awaitable[str | bytes]]
    wait_closed: Callable[[], Awaitable[int | None]] | None = None
    break_peer: Callable[[], Awaitable[None]] | None = None


MakeTransport = Callable[[], AbstractAsyncContextManager[ConnectedTransport]]
"""Builds a fresh connection: an async context manager yielding a :class:`ConnectedTransport`."""

FRAMES: tuple[str | bytes, ...] = (
    "hello",
    b"\x00\x01binary\xff",
    "",
    b"",
    "é ☃ \U0001f600",
    b"{}",
    "{}",
    "x" * 70_000,
    bytes(range(256)) * 300,
    "last",
)

_KEY = "contract-key"
_GROUP = "contract-group"
_CLOSE_CODE = 4000
_BURST = 200
_POLL = 0.01


async def check_transport(make_transport: MakeTransport, *, check_timeout: float = 5.0) -> None:
    """Check that your transport keeps the :class:`~wsregistry.Transport` contract.

    Each check calls ``make_transport()`` for a fresh connection and must finish
    within ``check_timeout`` seconds. The checks:

    * frames sent with ``send`` arrive as sent and in order: ``str`` as text,
      ``bytes`` as binary (empty, non-ASCII and 70 kB frames included);
    * a :class:`~wsregistry.Registry` drives it: ``send``, ``broadcast``,
      group broadcasts and ``conn.send`` arrive in call order, and
      ``conn.close(4000)`` reaches the peer (if ``wait_closed`` is given);
    * ``close`` is idempotent: a second and third call do not raise, and the
      peer sees the first code;
    * if it has ``send_nowait``: it returns a ``bool`` and, mixed with
      ``send`` (called when it answers ``False``), keeps the order;
    * if ``break_peer`` is given: after the peer went away, sending through the
      registry makes ``send`` raise, the registry unregisters the connection
      (close code 1011), and ``close`` on the broken transport does not raise.

    Args:
        make_transport: returns an async context manager yielding a
            :class:`ConnectedTransport`; leaving it tears the connection down
            (the transport may already be closed by then).
        check_timeout: seconds each check may take (default 5).

    Raises:
        AssertionError: the contract is broken; the message names the check
            and what was expected. An exception your transport raises where
            it should not (``send`` on an open connection) propagates as is.
        TypeError: ``make_transport`` yielded something else than a
            :class:`ConnectedTransport`.
        ValueError: ``check_timeout`` is not positive.

    Example:
        In a pytest test (with anyio's pytest plugin), for a transport over a
        client of your server::

            @asynccontextmanager
            async def connected():
                async with my_server() as server, my_client(server.url) as client:
                    yield ConnectedTransport(
                        transport=MyTransport(await server.accepted()),
                        receive=client.receive,
                        break_peer=client.kill,
                    )

            @pytest.mark.anyio
            async def test_my_transport_keeps_the_contract():
                await check_transport(connected)
    """
    checks: list[tuple[str, Callable[[ConnectedTransport], Awaitable[None]]]] = [
        ("frames_arrive_as_sent_and_in_order", _frames_arrive_as_sent_and_in_order),
        ("registry_drives_it_in_order", _registry_drives_it_in_order),
        ("close_is_idempotent", _close_is_idempotent),
        ("send_nowait_keeps_order", _send_nowait_keeps_order),
        ("broken_peer_makes_send_raise", _broken_peer_makes_send_raise),
    ]
    await run_checks(
        [(name, _on_connection(make_transport, check)) for name, check in checks],
        check_timeout=check_timeout,
    )


def _on_connection(
    make_transport: MakeTransport, check: Callable[[ConnectedTransport], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        async with make_transport() as connected:
            if not isinstance(connected, ConnectedTransport):
                raise TypeError(
                    "make_transport must yield a ConnectedTransport, "
                    f"got {type(connected).__name__}"
                )
            await check(connected)

    return run


def _describe(frame: object) -> str:
    kind = "text" if isinstance(frame, str) else "binary" if isinstance(frame, bytes) else "?"
    shown = repr(frame) if len(repr(frame)) <= 40 else repr(frame)[:37] + "..."
    return f"{kind} {shown}"


async def _expect_frames(
    connected: ConnectedTransport,
    send_all: Callable[[], Awaitable[None]],
    expected: Sequence[str | bytes],
) -> None:
    """Run ``send_all`` while the peer reads; the peer must get exactly ``expected``."""
    received: list[str | bytes] = []
    failed: list[Exception] = []

    async def sender() -> None:
        try:
            await send_all()
        except Exception as exc:  # raised as itself, not in an exception group
            failed.append(exc)
            tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sender)
        for _ in expected:
            received.append(await connected.receive())
    if failed:
        raise failed[0]
    for i, (got, want) in enumerate(zip(received, expected, strict=True)):
        if type(got) is not type(want) or got != want:
            raise AssertionError(
                f"frame {i} of {len(expected)}: expected {_describe(want)}, got {_describe(got)}"
                f"; the peer received, in order: {[_describe(f) for f in received]}"
            )


async def _expect_close_code(connected: ConnectedTransport, code: int) -> None:
    if connected.wait_closed is not None:
        seen = await connected.wait_closed()
        if seen != code:
            raise AssertionError(f"the peer saw close code {seen!r}, expected {code}")


async def _frames_arrive_as_sent_and_in_order(connected: ConnectedTransport) -> None:
    async def send_all() -> None:
        for frame in FRAMES:
            await connected.transport.send(frame)

    await _expect_frames(connected, send_all, FRAMES)


async def _registry_drives_it_in_order(connected: ConnectedTransport) -> None:
    kinds = ("send", "broadcast", "conn", "group")
    expected: list[str | bytes] = [
        f"conn-{i}".encode() if kinds[i % 4] == "conn" else f"{kinds[i % 4]}-{i}"
        for i in range(_BURST)
    ]
    async with Registry() as registry:
        conn = await registry.connect(connected.transport, key=_KEY, groups={_GROUP})

        async def send_all() -> None:
            for i in range(_BURST):
                kind = kinds[i % 4]
                if kind == "send":
                    await registry.send(_KEY, f"send-{i}")
                elif kind == "broadcast":
                    await registry.broadcast(f"broadcast-{i}")
                elif kind == "conn":
                    await conn.send(f"conn-{i}".encode())
                else:
                    await registry.broadcast(f"group-{i}", group=_GROUP)

        await _expect_frames(connected, send_all, expected)
        await conn.send({"json": True})
        got = await connected.receive()
        if not isinstance(got, str) or json.loads(got) != {"json": True}:
            raise AssertionError(
                f'conn.send({{"json": True}}): expected a JSON text frame, got {_describe(got)}'
            )
        await conn.close(_CLOSE_CODE, "contract")
        await _expect_close_code(connected, _CLOSE_CODE)


async def _close_is_idempotent(connected: ConnectedTransport) -> None:
    transport = connected.transport
    await transport.send("before close")
    got = await connected.receive()
    if got != "before close":
        raise AssertionError(f"expected text 'before close', got {_describe(got)}")
    await transport.close(CloseCode.NORMAL, "first")
    for attempt in ("second", "third"):
        try:
            await transport.close(CloseCode.GOING_AWAY, attempt)
        except Exception as exc:
            raise AssertionError(
                f"close() raised {exc!r} on a transport already closed ({attempt} call); "
                "close must be idempotent"
            ) from exc
    await _expect_close_code(connected, CloseCode.NORMAL)


async def _send_nowait_keeps_order(connected: ConnectedTransport) -> None:
    transport = connected.transport
    if not isinstance(transport, SupportsSendNowait):
        return
    frames = [f"n{i}" if i % 2 else f"n{i}".encode() for i in range(_BURST)]

    async def send_all() -> None:
        for i, frame in enumerate(frames):
            if i % 3 == 0:
                await transport.send(frame)
                continue
            written = transport.send_nowait(frame)
            if not isinstance(written, bool):
                raise AssertionError(
                    f"send_nowait returned {written!r}; expected True (written) or False "
                    "(the caller must await send)"
                )
            if not written:
                await transport.send(frame)

    await _expect_frames(connected, send_all, frames)


async def _broken_peer_makes_send_raise(connected: ConnectedTransport) -> None:
    if connected.break_peer is None:
        return
    async with Registry() as registry:
        conn = await registry.connect(connected.transport, key=_KEY)
        await registry.send(_KEY, "before the peer went away")
        await connected.receive()
        await connected.break_peer()

        async def keep_sending() -> None:
            # a broken TCP link may take a few writes to surface
            while not conn.closed:
                await registry.send(_KEY, "after the peer went away")
                await anyio.sleep(_POLL)

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_sending)
            await conn.wait_closed()
        if conn.close_code != CloseCode.INTERNAL_ERROR:
            raise AssertionError(
                f"the registry unregistered the connection with code {conn.close_code!r}, "
                f"expected {int(CloseCode.INTERNAL_ERROR)} (send raised)"
            )
        if registry.lookup(_KEY):
            raise AssertionError("the connection is still registered after send failed")
        try:
            await connected.transport.close(CloseCode.NORMAL, "after the peer went away")
        except Exception as exc:
            raise AssertionError(
                f"close() raised {exc!r} on a transport whose peer went away; "
                "close must be safe on a broken socket"
            ) from exc
