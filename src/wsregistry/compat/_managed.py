"""What the drop-in managers share: socket checks, their transport, and the lazy start.

* :func:`check_socket` accepts anything that behaves like a Starlette WebSocket
  (the methods the managers call), and says what is missing **before** the
  socket is accepted.
* :class:`SocketTransport` writes to one socket. A stock Starlette/FastAPI
  WebSocket goes through :class:`~wsregistry.adapters.starlette.StarletteTransport`;
  anything else (a subclass that overrides a send method, a socket whose
  ``send_json`` a test patched, an ``AsyncMock``) is written through its own
  methods: ``send_json(message)`` for a JSON object or array (the message a
  ``dict``/``list`` was serialised to, parsed back), ``send_text`` for other
  text and ``send_bytes`` for binary frames. The
  socket is bound to the event loop that accepted it: a send made on another
  loop (a registry started elsewhere) is handed to the socket's loop.
* :class:`LazyRunner` starts the registry on the loop that serves connections
  (the first ``connect``) when no lifespan started it, and only there: calls that
  find the registry stopped start nothing (nobody is online then).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from ..adapters._eager import EagerSender
from ..adapters._workers import warn_if_split
from ..errors import RegistryClosed, RegistryNotStarted
from ..registry import Registry

__all__ = [
    "NOT_RUNNING",
    "SOCKET_METHODS",
    "LazyRunner",
    "SocketTransport",
    "check_socket",
]

NOT_RUNNING = (RegistryNotStarted, RegistryClosed)
"""What a call on a stopped registry raises: nobody is connected then."""

SOCKET_METHODS = ("accept", "send_text", "send_bytes", "send_json", "close")
"""The WebSocket methods the drop-in managers call (duck typing)."""

_SEND_METHODS = ("send", "send_text", "send_bytes", "send_json")

_NOT_JSON = object()


def _json_container(text: str) -> Any:
    """``text`` parsed, if it is a JSON object or array; else :data:`_NOT_JSON`."""
    if not text.startswith(("{", "[")):
        return _NOT_JSON
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def check_socket(websocket: object) -> None:
    """Raise ``TypeError`` unless ``websocket`` has the methods the managers call."""
    missing = [name for name in SOCKET_METHODS if not callable(getattr(websocket, name, None))]
    if missing:
        raise TypeError(
            "expected a Starlette/FastAPI WebSocket or an object with the async methods "
            f"{', '.join(SOCKET_METHODS)}; {type(websocket).__name__} has no "
            f"{', '.join(missing)}"
        )


def _stock_starlette(websocket: object) -> bool:
    """Whether ``websocket`` is a Starlette WebSocket whose send methods are Starlette's own."""
    try:
        from starlette.websockets import WebSocket
    except ImportError:  # pragma: no cover - the managers need Starlette anyway
        return False
    if not isinstance(websocket, WebSocket):
        return False
    own = vars(websocket)
    return all(
        name not in own and getattr(type(websocket), name) is getattr(WebSocket, name)
        for name in _SEND_METHODS
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # trio, or no loop
        return None


class SocketTransport:
    """A :class:`~wsregistry.Transport` over one socket a manager accepted."""

    __slots__ = ("_eager", "_loop", "_starlette", "websocket")

    def __init__(self, websocket: Any) -> None:
        from ..adapters.starlette import StarletteTransport

        self.websocket = websocket
        self._loop = _running_loop()
        self._starlette = StarletteTransport(websocket) if _stock_starlette(websocket) else None
        self._eager = EagerSender() if self._loop is not None and self._starlette is None else None

    def __repr__(self) -> str:
        return f"<SocketTransport {type(self.websocket).__name__}>"

    def _on_loop(self) -> bool:
        return self._loop is None or _running_loop() is self._loop

    async def _elsewhere(self, call: Coroutine[Any, Any, None]) -> None:
        """Run ``call`` on the socket's own loop and wait for it here."""
        loop = self._loop
        assert loop is not None
        try:
            future = asyncio.run_coroutine_threadsafe(call, loop)
        except RuntimeError as exc:  # that loop is closed: so is the socket
            call.close()
            raise ConnectionError("the socket's event loop is closed") from exc
        await asyncio.wrap_future(future)

    def _frame(self, data: str | bytes) -> Coroutine[Any, Any, None]:
        websocket = self.websocket

        async def send() -> None:
            if isinstance(data, bytes):
                await websocket.send_bytes(data)
                return
            message = _json_container(data)
            if message is _NOT_JSON:
                await websocket.send_text(data)
            else:  # what the hand-written manager did with a dict: send_json(message)
                await websocket.send_json(message)

        return send()

    def send_nowait(self, data: str | bytes) -> bool:
        """Hand the frame to the socket now if nothing earlier is in flight (its own loop only)."""
        if not self._on_loop():
            return False
        if self._starlette is not None:
            return self._starlette.send_nowait(data)
        eager = self._eager
        if eager is None or eager.busy:
            return False
        eager.start(self._frame(data))
        return True

    async def send(self, data: str | bytes) -> None:
        """Send one frame through the socket (on its own loop); raises if it is closed."""
        if not self._on_loop():
            await self._elsewhere(self.send(data))
            return
        if self._starlette is not None:
            await self._starlette.send(data)
            return
        if self._eager is not None:
            await self._eager.wait()
        await self._frame(data)

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code``. Idempotent; never raises."""
        if not self._on_loop():
            with contextlib.suppress(Exception):
                await self._elsewhere(self.close(code, reason))
            return
        if self._starlette is not None:
            await self._starlette.close(code, reason)
            return
        with contextlib.suppress(Exception):
            if self._eager is not None:
                await self._eager.wait()
        with contextlib.suppress(Exception):
            await self.websocket.close(code, reason)

    def abort(self) -> None:
        """Abandon the send in flight (the connection is being dropped)."""
        if self._starlette is not None:
            cancel = self._starlette.abort
        elif self._eager is not None:
            cancel = self._eager.cancel
        else:
            return
        if self._on_loop():
            cancel()
        elif self._loop is not None:
            with contextlib.suppress(RuntimeError):  # that loop is gone: nothing to abandon
                self._loop.call_soon_threadsafe(cancel)


class LazyRunner:
    """Runs a manager's registry under a lifespan, or starts it on the first ``connect``."""

    __slots__ = ("_ready", "_runner", "_stop", "registry")

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._runner: asyncio.Task[None] | None = None
        # A thread-safe future: a connect on another loop may wait for the start too.
        self._ready: concurrent.futures.Future[None] | None = None
        self._stop: asyncio.Event | None = None

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the registry for the life of the block."""
        async with self.registry:
            warn_if_split(self.registry)
            yield

    async def start_here(self, operation: str) -> None:
        """Start the registry on this loop if it is not running (asyncio only).

        Called by ``connect`` only: the loop that accepts sockets serves them, so
        the registry never binds to a loop that runs a one-off job.

        Raises:
            RegistryNotStarted: not running and this is not an asyncio loop.
        """
        if self.registry.running:
            return
        runner = self._runner
        if runner is not None and not runner.done() and self._ready is not None:
            await asyncio.wrap_future(self._ready)  # another connect is starting it
            return
        loop = _running_loop()
        if loop is None:
            raise RegistryNotStarted(operation)
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        ready.set_running_or_notify_cancel()  # a cancelled waiter cannot cancel the start
        stop = asyncio.Event()
        self._ready, self._stop = ready, stop
        self._runner = loop.create_task(self._run(ready, stop))
        await asyncio.wrap_future(ready)

    async def _run(self, ready: concurrent.futures.Future[None], stop: asyncio.Event) -> None:
        try:
            async with self.registry:
                warn_if_split(self.registry)
                ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise

    async def aclose(self) -> None:
        """Stop a registry started by :meth:`start_here`. Idempotent."""
        runner, stop = self._runner, self._stop
        if runner is None or stop is None or runner.done():
            return
        if _running_loop() is runner.get_loop():
            stop.set()
            await runner
        else:
            with contextlib.suppress(RuntimeError):  # its loop is gone: so is the run
                runner.get_loop().call_soon_threadsafe(stop.set)
