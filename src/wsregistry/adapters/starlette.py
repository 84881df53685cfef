"""The registry on Starlette (and any ASGI server): transport and endpoint.

Install with ``pip install 'wsregistry[starlette]'``.

:class:`RegistryEndpoint` does the whole life of a socket: check ``Origin`` →
authenticate → (refuse | accept) → register → receive loop handing each
message to ``on_message`` → always unregister::

    import contextlib
from functools import partial

    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from wsregistry import Registry
    from wsregistry.adapters.starlette import Identity, RegistryEndpoint

    registry = Registry()

    async def authenticate(websocket):
        user = websocket.query_params.get("user")  # verify a real token or session here
        return Identity(key=user, groups={"lobby"}) if user else None

    async def on_message(conn, data):
        await registry.broadcast(data, group="lobby", exclude=conn)

    endpoint = RegistryEndpoint(
        registry,
        authenticate=authenticate,
        on_message=on_message,
        allowed_origins=["https://app.example.com"],
        max_connections_per_key=5,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with registry:
            yield

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)], lifespan=lifespan)

Inside your own endpoint function, call ``await endpoint.handle(websocket)``.

Refusals (see :mod:`wsregistry.adapters`): in strict mode the answer is an HTTP
403/429 sent with the WebSocket Denial Response extension (uvicorn supports it
with all three of its WebSocket implementations); on a server without it,
closing before accept makes the server answer HTTP 403. uvicorn's
``websockets-sansio`` implementation (its default) logs a spurious
``ASGI callable returned without completing handshake.`` at ERROR for each HTTP
refusal (uvicorn's bug; the client gets the right status); ``--ws wsproto`` or
``refusal="close"`` avoid it.

Server settings that matter (uvicorn names; other servers have equivalents):

* Heartbeats: uvicorn pings every ``ws_ping_interval`` seconds and drops a
  peer that does not answer within ``ws_ping_timeout`` (defaults 20/20;
  ``--ws-ping-interval``/``--ws-ping-timeout``), with ``websockets``,
  ``websockets-sansio`` and ``wsproto`` alike in uvicorn 0.54 (older releases
  had no pings with ``wsproto``). With uvicorn's deprecated legacy
  ``websockets`` implementation a peer that stopped answering is reported to
  the app only after a further fixed 10 s close timeout; ``websockets-sansio``
  and ``wsproto`` report it at once, the app-level heartbeat too.
  On a server without protocol pings, set ``heartbeat_interval`` (and
  ``heartbeat_timeout``): the endpoint then sends ``heartbeat_message`` and
  closes (1011) a peer that sends nothing within the timeout; the client must
  answer the ping with any message.
* Inbound size: the endpoint closes with 1009 any message over
  ``max_message_size``; set the server's own limit (``ws_max_size``) to the
  same value so the server does not buffer more than that first.
* Shutdown: uvicorn closes every WebSocket with 1012 (service restart) *before*
  it runs the lifespan shutdown, so ``async with registry`` would find the
  sockets already gone and queued messages lost. To deliver what is queued and
  close with 1001 first, run uvicorn through
  :class:`wsregistry.adapters.uvicorn.Server`, or call
  :meth:`Registry.close_connections` from your own shutdown hook.

Stalled peers: ASGI gives no way to drop a TCP connection, so
:meth:`StarletteTransport.abort` ends the endpoint's receive loop (the server
then closes the socket when its buffers allow); the connection is unregistered
either way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

import anyio

try:
    from starlette.responses import PlainTextResponse
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise ImportError(
        "wsregistry.adapters.starlette needs Starlette: pip install 'wsregistry[starlette]'"
    ) from exc

from ..codes import CloseCode
from ._eager import EAGER_TASKS, EagerSender, running_asyncio
from ._frames import shared_frame
from ._handshake import Identity, LimitPolicy, Refusal, RefusalMode, Refuse
from ._session import Endpoint, EndpointOptions
from ._uvicorn_direct import find_direct_path

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.types import Receive, Scope, Send
    from typing_extensions import Unpack

    from ..registry import Registry

__all__ = [
    "EndpointOptions",
    "Identity",
    "LimitPolicy",
    "RefusalMode",
    "Refuse",
    "RegistryEndpoint",
    "StarletteTransport",
]

_DENIAL_EXTENSION = "websocket.http.response"


class StarletteTransport:
    """A :class:`~wsregistry.Transport` over an accepted Starlette/FastAPI ``WebSocket``.

    ``send`` writes a text frame for ``str`` and a binary frame for ``bytes``
    and waits while the server applies back-pressure. ``close`` is idempotent
    and ignores sockets that are already closed.

    Under uvicorn, frames take the **direct path** when that is provably the
    same as the ASGI send (no middleware that could observe ``send``, no
    compression negotiated, the socket open and writable; the operations
    guide has the details): the frame is built once per
    payload - a broadcast shares it between every connection - and written to
    uvicorn's transport at once, by ``send_nowait`` and by ``send`` alike;
    ``abort`` then drops the TCP connection. Otherwise, on asyncio with Python
    3.12 or later, ``send_nowait`` starts the ASGI send as an eager task:
    servers such as uvicorn finish it without waiting while
    the socket's buffer has room, so a broadcast writes directly instead of
    going through the registry's writer tasks. The send starts and ends in that
    one task (never in the caller's), so middleware that wraps ``send`` in a
    cancel scope or a context variable works. If the send waits, it finishes in
    its task and ``send_nowait`` answers ``False`` until it is done (the
    registry queues meanwhile), so frames keep their order. On trio and before
    Python 3.12 it always answers ``False`` and the registry's writers send.

    Args:
        websocket: a ``starlette.websockets.WebSocket`` (accepted before the
            first send).
        direct: allow the direct path into uvicorn (``False``: always the ASGI
            send; the ``WSREGISTRY_UVICORN_DIRECT=0`` environment variable turns it
            off for the whole process).
    """

    __slots__ = ("_aborted", "_direct", "_eager", "_scope", "websocket")

    def __init__(self, websocket: WebSocket, *, direct: bool = True) -> None:
        if not isinstance(websocket, WebSocket):
            raise TypeError(f"expected a starlette WebSocket, got {type(websocket).__name__}")
        self.websocket = websocket
        self._scope: anyio.CancelScope | None = None
        self._aborted = False
        asyncio_loop = running_asyncio()
        self._eager = EagerSender() if EAGER_TASKS and asyncio_loop else None
        # the ASGI send the app was given (Starlette keeps it as ``_send``)
        self._direct = find_direct_path(websocket._send) if direct and asyncio_loop else None

    def __repr__(self) -> str:
        client = self.websocket.client
        peer = f"{client.host}:{client.port}" if client else "?"
        return f"<StarletteTransport {peer} {self.websocket.application_state.name}>"

    async def send(self, data: str | bytes) -> None:
        """Send one frame; raises when the socket is closed or broken."""
        if self._eager is not None:
            await self._eager.wait()
        direct = self._direct
        if direct is not None and direct.writable():
            direct.write(shared_frame(data))
            return
        if isinstance(data, str):
            await self.websocket.send_text(data)
        else:
            await self.websocket.send_bytes(data)

    def send_nowait(self, data: str | bytes) -> bool:
        """Write one frame now if the server takes it without waiting.

        On the direct path into uvicorn, or on asyncio with Python 3.12+.

        Returns:
            ``True`` if the frame was handed to the server (a send the server
            made wait finishes in the background, in order); ``False`` if the
            caller must ``await send`` instead.

        Raises:
            Exception: what the ASGI send raises when the socket is closed or broken.
        """
        eager = self._eager
        if eager is not None and eager.busy:
            return False  # an ASGI send is under way: frames keep their order
        direct = self._direct
        if direct is not None and direct.writable():
            direct.write(shared_frame(data))
            return True
        if eager is None:
            return False
        if isinstance(data, str):
            eager.start(self.websocket.send({"type": "websocket.send", "text": data}))
        else:
            eager.start(self.websocket.send({"type": "websocket.send", "bytes": data}))
        return True

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame with ``code`` and ``reason``. Idempotent; never raises."""
        # Already closed or gone: closed is what we wanted.
        with contextlib.suppress(Exception):
            if self._eager is not None:
                await self._eager.wait()  # the close frame goes after the frames handed over
        with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
            await self.websocket.close(code, reason)

    def abort(self) -> None:
        """Stop serving the socket at once: ends the endpoint's receive loop.

        On the direct path the TCP connection is dropped at once; otherwise
        (ASGI cannot drop it) the server closes it when the endpoint returns.
        """
        self._aborted = True
        if self._direct is not None:
            self._direct.abort()
        if self._eager is not None:
            self._eager.cancel()
        if self._scope is not None:
            self._scope.cancel()

    async def receive(self) -> str | bytes | None:
        """The next inbound message (``str`` or ``bytes``), or ``None`` once the peer left."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text: str | None = message.get("text")
        if text is not None:
            return text
        data: bytes | None = message.get("bytes")
        return data if data is not None else b""

    def watch(self, scope: anyio.CancelScope) -> None:
        """Let :meth:`abort` end the endpoint's receive loop, which runs in ``scope``."""
        self._scope = scope
        if self._aborted:
            scope.cancel()


class RegistryEndpoint(Endpoint[WebSocket]):
    """An ASGI WebSocket endpoint that registers each admitted socket in ``registry``.

    Use it as a route (``WebSocketRoute("/ws", endpoint)``, it is an ASGI app),
    or call :meth:`handle` from your own endpoint. The registry must be running
    (enter it in the app's lifespan).

    Args:
        registry: the registry to register sockets in.
        authenticate: ``async (websocket) -> Identity | None``; runs before
            accept. ``None`` or :class:`Refuse` refuses the socket.
        subprotocols: subprotocols the endpoint speaks, by preference; the
            first one the client offers is selected at accept (browsers fail a
            handshake that offered subprotocols and got none back).
        **options: the endpoint options (hooks, ``Origin`` allow-list, limits,
            heartbeat), described once in :class:`~wsregistry.adapters.EndpointOptions`.

    Raises:
        TypeError, ValueError: an option has the wrong type or value.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        authenticate: Callable[[WebSocket], Awaitable[Identity | None]],
        subprotocols: Sequence[str] = (),
        **options: Unpack[EndpointOptions],
    ) -> None:
        if isinstance(subprotocols, str):
            raise TypeError("subprotocols must be a sequence of names, not a single str")
        self._subprotocols = tuple(subprotocols)
        super().__init__(registry, authenticate=authenticate, **options)

    def route(self, path: str, *, name: str | None = None) -> WebSocketRoute:
        """A plain Starlette route serving this endpoint at ``path``.

        Mount it on a Starlette app (``routes=[endpoint.route("/ws")]``) or a
        FastAPI one (``app.router.routes.append(endpoint.route("/ws"))``). On
        FastAPI it skips the dependency-injection machinery of
        ``add_api_websocket_route``, which costs several KiB per connection;
        use ``add_api_websocket_route(path, endpoint.handle)`` instead when the
        route needs FastAPI dependencies.
        """
        return WebSocketRoute(path, self, name=name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI interface: serve one WebSocket connection."""
        if scope["type"] != "websocket":
            raise RuntimeError(
                f"RegistryEndpoint serves WebSocket routes only, got {scope['type']!r}"
            )
        await self.handle(WebSocket(scope, receive=receive, send=send))

    async def handle(self, websocket: WebSocket) -> None:
        """Serve ``websocket`` (not yet accepted) until it closes.

        Returns when the peer is gone or the registry closed the connection;
        the connection is unregistered by then, whatever happened.
        """
        admitted = await self._admit(websocket, websocket.headers.get("origin"))
        if isinstance(admitted, Refusal):
            await self._refuse(websocket, admitted)
            return
        transport = StarletteTransport(websocket)
        # bound methods and a partial: a closure with its cells costs more per connection
        accept = partial(self._accept, websocket)
        await self._run(
            transport, admitted, transport.receive, accept=accept, abort_scope=transport.watch
        )

    async def _accept(self, websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols") or ()
        chosen = next((name for name in self._subprotocols if name in offered), None)
        await websocket.accept(subprotocol=chosen)

    async def _refuse(self, websocket: WebSocket, refusal: Refusal) -> None:
        if self.refusal_mode is RefusalMode.CLOSE:
            await self._accept(websocket)
            await websocket.close(refusal.code, refusal.reason)
        elif _DENIAL_EXTENSION in websocket.scope.get("extensions", {}):
            response = PlainTextResponse(refusal.reason, status_code=refusal.status)
            await websocket.send_denial_response(response)
        else:  # the ASGI server answers a close before accept with HTTP 403
            await websocket.close(CloseCode.POLICY_VIOLATION, refusal.reason)
