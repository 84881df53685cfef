"""The registry on a plain ``websockets`` server (``websockets.asyncio.server``).

Install with ``pip install 'wsregistry[websockets]'`` (websockets >= 14).

:func:`serve` runs a server whose every connection is authenticated, registered
and served until it closes::

    import asyncio
    from wsregistry import Registry
    from wsregistry.adapters.websockets import Identity, serve

    async def authenticate(connection):
        token = connection.request.headers.get("Authorization", "")
        user = await users.from_token(token)          # your code
        return Identity(key=user.id) if user else None

    async def main():
        async with Registry() as registry:
            async def on_message(conn, data):
                await registry.broadcast(data, exclude=conn)

            async with serve(
                registry, "0.0.0.0", 8765,
                authenticate=authenticate,
                on_message=on_message,
                allowed_origins=["https://app.example.com"],
            ) as server:
                await server.serve_forever()

    asyncio.run(main())

With your own ``websockets.asyncio.server.serve`` call, pass a
:class:`RegistryHandler` as the handler and its ``process_request`` (strict mode
refuses in the HTTP handshake: 403 for authentication and ``Origin``, 429 for
the connection limit)::

    handler = RegistryHandler(registry, authenticate=authenticate)
    async with websockets.asyncio.server.serve(
        handler, host, port, process_request=handler.process_request, max_size=2**20
    ):
        ...

Heartbeats are the server's own pings: ``ping_interval`` / ``ping_timeout``
(20 s / 20 s by default) close a peer that stops answering with 1011; a
half-open peer is unregistered after a further ``close_timeout`` (the time
``websockets`` waits for the TCP close; :func:`serve` sets it to the registry's
``close_timeout``, 2 s by default, instead of websockets' 10 s). Inbound
size: ``max_size`` closes with 1009 (``serve`` sets it to
``max_message_size``). Shutdown: leaving :func:`serve` first delivers what is
queued and closes every registered connection with 1001
(:meth:`Registry.close_connections`), then closes the server.

The transport writes without awaiting while the connection is open and its
write buffer is under ``write_limit`` (``send_nowait``); otherwise the registry
queues and awaits ``send``, so per-connection order holds either way.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

try:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as _ws_serve
    from websockets.exceptions import ConnectionClosed
    from websockets.protocol import Side, State
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise ImportError(
        "wsregistry.adapters.websockets needs websockets: pip install 'wsregistry[websockets]'"
    ) from exc

from ..codes import CloseCode
from ._frames import shared_frame
from ._handshake import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Identity,
    LimitPolicy,
    Refusal,
    RefusalMode,
    Refuse,
)
from ._session import OPTION_NAMES, Endpoint, EndpointOptions, Serving

if TYPE_CHECKING:
    from typing_extensions import Unpack
    from websockets.asyncio.server import Server
    from websockets.http11 import Request, Response

    from ..registry import Registry

__all__ = [
    "EndpointOptions",
    "Identity",
    "LimitPolicy",
    "RefusalMode",
    "Refuse",
    "RegistryHandler",
    "RegistryServerConnection",
    "WebsocketsTransport",
    "serve",
]

logger = logging.getLogger("wsregistry")


class WebsocketsTransport:
    """A :class:`~wsregistry.Transport` over a ``websockets`` ``ServerConnection``.

    Args:
        connection: an open ``websockets.asyncio.server.ServerConnection``
            (a client ``ClientConnection`` works the same way).
    """

    __slots__ = ("connection",)

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    def __repr__(self) -> str:
        return (
            f"<WebsocketsTransport {self.connection.remote_address} "
            f"{self.connection.protocol.state.name}>"
        )

    async def send(self, data: str | bytes) -> None:
        """Send one frame, waiting while the write buffer is over its limit.

        Raises:
            websockets.exceptions.ConnectionClosed: the connection is closed.
        """
        await self.connection.send(data)

    def send_nowait(self, data: str | bytes) -> bool:
        """Write one frame without waiting if the write buffer has room.

        On a server connection without extensions (no compression negotiated)
        and without debug logging, every peer gets the same frame bytes, so the
        frame of a payload is built once and shared by all the connections a
        broadcast writes to (the last payload's frame is kept for that).

        Returns:
            ``True`` if the frame went to the socket's buffer; ``False`` when the
            buffer is over ``write_limit`` (or a fragmented message is being
            sent) and the caller must ``await send`` instead.

        Raises:
            ConnectionError: the connection is closing or closed.
        """
        connection = self.connection
        protocol = connection.protocol
        if protocol.state is not State.OPEN:
            raise ConnectionError(f"WebSocket connection is {protocol.state.name}")
        if connection.paused or connection.send_in_progress is not None:
            return False
        if (
            protocol.side is Side.SERVER
            and not protocol.extensions
            and not protocol.debug
            and not protocol.writes
            and not protocol.expect_continuation_frame
        ):
            connection.transport.write(shared_frame(data))
            return True
        if isinstance(data, str):
            protocol.send_text(data.encode())
        else:
            protocol.send_binary(data)
        connection.send_data()
        return True

    async def receive(self) -> str | bytes | None:
        """The next inbound message (``str`` or ``bytes``), or ``None`` once the peer left."""
        try:
            return await self.connection.recv()
        except ConnectionClosed:
            return None

    async def close(self, code: int, reason: str) -> None:
        """Run the closing handshake. Idempotent; never raises for a closed socket."""
        await self.connection.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection at once, without a closing handshake."""
        self.connection.transport.abort()


class RegistryServerConnection(ServerConnection):
    """A ``ServerConnection`` that reports at once when it stops being open.

    ``websockets`` decides to close a connection inside its protocol callbacks
    (an inbound message over ``max_size`` closes with 1009, a protocol error
    with 1002) but wakes ``recv()`` only once the TCP connection is gone, which
    a peer that ignores the close frame can delay until the next ping times out
    (forever with pings off). :func:`serve` uses this class
    (``create_connection``) so that :class:`RegistryHandler` unregisters the
    connection as soon as the server decides to close it. Pass
    ``create_connection=RegistryServerConnection`` to your own
    ``websockets.asyncio.server.serve`` call for the same behaviour.
    """

    _on_closing: Callable[[], None] | None = None

    def data_received(self, data: bytes) -> None:
        """Feed the protocol; report a closing connection to the handler."""
        super().data_received(data)
        self._check_open()

    def eof_received(self) -> None:
        """The peer half-closed the TCP connection; report it to the handler."""
        super().eof_received()
        self._check_open()

    def connection_lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone; report it to the handler."""
        super().connection_lost(exc)
        self._check_open()

    def _check_open(self) -> None:
        callback = self._on_closing
        if callback is not None and self.protocol.state is not State.OPEN:
            self._on_closing = None
            callback()


class RegistryHandler(Endpoint[ServerConnection]):
    """A ``websockets`` connection handler that registers each admitted connection.

    Pass it as the handler of ``websockets.asyncio.server.serve`` together with
    ``process_request=handler.process_request``; :func:`serve` does both.

    Args:
        registry: the registry to register connections in (must be running).
        authenticate: ``async (connection) -> Identity | None``; reads
            ``connection.request`` (path, headers) and ``remote_address``. Runs
            in the HTTP handshake in strict mode, right after it in
            browser-friendly mode; ``None`` or :class:`Refuse` refuses.
        **options: the endpoint options (hooks, ``Origin`` allow-list, limits,
            ``refusal``, ``max_message_size``, heartbeat), described once in
            :class:`~wsregistry.adapters.EndpointOptions`. In strict refusal mode
            without ``process_request`` installed, refusals close with 1008 after
            the handshake; give the server ``max_size`` equal to
            ``max_message_size``.

    Raises:
        TypeError, ValueError: an option has the wrong type or value.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        authenticate: Callable[[ServerConnection], Awaitable[Identity | None]],
        **options: Unpack[EndpointOptions],
    ) -> None:
        super().__init__(registry, authenticate=authenticate, **options)
        self._admitted: weakref.WeakKeyDictionary[ServerConnection, Identity] = (
            weakref.WeakKeyDictionary()
        )

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        """``process_request`` hook: refuse in the HTTP handshake (strict mode).

        Returns:
            An HTTP error response to refuse, ``None`` to go on with the handshake.
        """
        if self.refusal_mode is not RefusalMode.HTTP:
            return None
        admitted = await self._admit(connection, request.headers.get("Origin"))
        if isinstance(admitted, Refusal):
            return connection.respond(admitted.status, admitted.reason + "\n")
        self._admitted[connection] = admitted
        return None

    async def __call__(self, connection: ServerConnection) -> None:
        """Serve one connection until it closes; always unregisters it."""
        identity = self._admitted.pop(connection, None)
        if identity is None:
            request = connection.request
            origin = request.headers.get("Origin") if request is not None else None
            admitted = await self._admit(connection, origin)
            if isinstance(admitted, Refusal):
                code = (
                    admitted.code
                    if self.refusal_mode is RefusalMode.CLOSE
                    else CloseCode.POLICY_VIOLATION
                )
                await connection.close(code, admitted.reason)
                return
            identity = admitted

        transport = WebsocketsTransport(connection)
        # bound methods and partials: closures with their cells cost more per connection
        await self._run(transport, identity, transport.receive, watch=partial(_watch, connection))


def _watch(connection: ServerConnection, serving: Serving) -> None:
    """Report to ``serving`` as soon as ``connection`` stops being open."""
    closing = partial(_closing, connection, serving)
    if isinstance(connection, RegistryServerConnection):
        connection._on_closing = closing
        connection._check_open()  # it may have changed since the handshake
    else:  # any ServerConnection: learn of the TCP connection's end at once
        connection.connection_lost_waiter.add_done_callback(lambda _: closing())


def _closing(connection: ServerConnection, serving: Serving) -> None:
    protocol = connection.protocol
    # The server decided to close (oversize, protocol error): it reads nothing more, so
    # the receive loop ends too. A peer that closed or dropped: what it sent before is
    # still handed to on_message, then recv() reports the end.
    decided = protocol.close_sent is not None and protocol.close_rcvd is None
    if decided:
        _log_server_close(connection, serving)
    serving.peer_gone(stop=decided)


def _log_server_close(connection: ServerConnection, serving: Serving) -> None:
    """Log a close the server decided (oversize, protocol error), at INFO like the others."""
    protocol = connection.protocol
    sent, received = protocol.close_sent, protocol.close_rcvd
    if sent is None or received is not None or serving.conn.close_code is not None:
        return  # the peer closed first, the registry closed it, or the TCP connection dropped
    if sent.code == CloseCode.MESSAGE_TOO_BIG:
        logger.info(
            "closing %r: inbound message of over %s bytes",
            serving.conn,
            protocol.max_message_size,
        )
    else:
        logger.info("closing %r: %s (%s)", serving.conn, sent.reason or "protocol error", sent.code)


@asynccontextmanager
async def serve(
    registry: Registry,
    host: str | None = None,
    port: int | None = None,
    *,
    authenticate: Callable[[ServerConnection], Awaitable[Identity | None]],
    ping_interval: float | None = 20,
    ping_timeout: float | None = 20,
    **kwargs: Any,
) -> AsyncIterator[Server]:
    """Run a ``websockets`` server that registers its connections in ``registry``.

    An async context manager yielding the ``websockets`` ``Server`` (its
    ``sockets`` tell the bound port when ``port=0``). Leaving it delivers what
    is queued and closes registered connections with 1001, then closes the
    server; both steps are shielded from cancellation and bounded by the
    registry's ``drain_timeout`` and ``close_timeout``.

    Args:
        registry: a running registry.
        host: interface to bind (``None``: all).
        port: TCP port (0: any free port).
        authenticate: see :class:`RegistryHandler`.
        ping_interval: seconds between protocol pings (``None``: no heartbeat).
        ping_timeout: seconds to wait for a pong before closing with 1011.
        **kwargs: the endpoint options of :class:`~wsregistry.adapters.EndpointOptions`
            (``max_message_size`` is also the server's ``max_size``), and more
            options of ``websockets.asyncio.server.serve`` (``ssl``,
            ``compression``, ``write_limit``, ...). ``close_timeout`` defaults to
            the registry's: a peer that stops answering pings is dropped (and
            unregistered) within ``ping_interval + ping_timeout + close_timeout``
            seconds.

    Raises:
        TypeError, ValueError: an option has the wrong type or value.
    """
    for name in ("process_request", "max_size", "handler"):
        if name in kwargs:
            raise TypeError(f"serve() sets {name} itself; use RegistryHandler for full control")
    options: dict[str, Any] = {name: kwargs.pop(name) for name in OPTION_NAMES & kwargs.keys()}
    handler = RegistryHandler(registry, authenticate=authenticate, **options)
    max_message_size = options.get("max_message_size", DEFAULT_MAX_MESSAGE_SIZE)
    kwargs.setdefault("close_timeout", registry.close_timeout)
    kwargs.setdefault("create_connection", RegistryServerConnection)
    async with _ws_serve(
        handler,
        host,
        port,
        process_request=handler.process_request,
        max_size=max_message_size,
        ping_interval=ping_interval,
        ping_timeout=ping_timeout,
        **kwargs,
    ) as server:
        try:
            yield server
        finally:
            if registry.running:
                with anyio.CancelScope(shield=True):
                    await registry.close_connections()
