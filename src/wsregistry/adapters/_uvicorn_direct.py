"""The direct path: frames written straight into uvicorn's WebSocket protocol.

An ASGI ``websocket.send`` through Starlette and uvicorn costs a message dict,
Starlette's state checks, the exception middleware's ``sender`` wrapper,
uvicorn's ``send`` coroutine and a frame built by the protocol library for every
target: about 5 us of Python before the ``transport.write``. When the socket is
open and writable and no extension was negotiated, what uvicorn would write is
exactly the unmasked frame of the payload (``_frames``), so the registry writes
that frame to uvicorn's asyncio transport itself, and a broadcast shares one
frame between every target.

It is used only when that is provably equivalent to the ASGI send:

* the ASGI ``send`` leads to a bound method of one of uvicorn's three WebSocket
  protocols (``websockets-sansio``, ``websockets``, ``wsproto``) through
  wrappers known to pass ``websocket.send`` through unchanged (Starlette's
  exception-handling ``sender``). Any other wrapper - a middleware that could
  observe or change outgoing messages, such as OpenTelemetry's ASGI middleware
  or uvicorn's trace-level message logger - turns the path off;
* the installed uvicorn is a version whose internals this module was tested
  against (``KNOWN_UVICORN``);
* at each write: the handshake is complete, no extension was negotiated
  (permessage-deflate turns the path off), the protocol library does not log
  frames (debug logging), no close was sent or received, and the transport is
  not paused by flow control.

Whenever a check fails the caller takes the normal ASGI path; setting the
environment variable ``WSREGISTRY_UVICORN_DIRECT=0`` turns the path off for the
process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

__all__ = ["KNOWN_UVICORN", "DirectPath", "find_direct_path"]

KNOWN_UVICORN = ((0, 30), (0, 55))
"""uvicorn versions (from, up to excluded) whose protocol internals the direct path reads."""

_OFF = frozenset({"0", "false", "no", "off"})


def _enabled() -> bool:
    """The switch, read at each connection: ``WSREGISTRY_UVICORN_DIRECT=0`` turns the path off."""
    return os.environ.get("WSREGISTRY_UVICORN_DIRECT", "1").strip().lower() not in _OFF


_PASS_THROUGH = frozenset(
    {
        # Starlette's exception handler: only notes "http.response.start", awaits send(message)
        (
            "starlette._exception_handler",
            "wrap_app_handling_exceptions.<locals>.wrapped_app.<locals>.sender",
        ),
    }
)
_MAX_HOPS = 8


class DirectPath:
    """uvicorn's protocol object under one connection, and how to write to it.

    Attributes:
        implementation: ``"websockets-sansio"``, ``"websockets"`` or ``"wsproto"``.
    """

    __slots__ = ("_is_open", "_protocol", "implementation")

    def __init__(self, implementation: str, protocol: Any, is_open: Callable[[Any], bool]) -> None:
        self.implementation = implementation
        self._protocol = protocol
        self._is_open = is_open

    def __repr__(self) -> str:
        return f"<DirectPath {self.implementation}>"

    def writable(self) -> bool:
        """Whether a data frame written now is what the ASGI send would write, at once."""
        return self._is_open(self._protocol)

    def write(self, frame: bytes) -> None:
        """Hand ``frame`` to the transport (check :meth:`writable` first)."""
        self._protocol.transport.write(frame)

    def abort(self) -> None:
        """Drop the TCP connection at once."""
        self._protocol.transport.abort()


def find_direct_path(send: Any) -> DirectPath | None:
    """The direct path under an accepted WebSocket's ASGI ``send``, or ``None``.

    Call it after the handshake (the negotiated extensions are known then).
    """
    if not _enabled() or not _known_uvicorn():
        return None
    for _ in range(_MAX_HOPS):
        owner = getattr(send, "__self__", None)
        if owner is not None:
            return _protocol_path(owner, getattr(send, "__name__", ""))
        code = getattr(send, "__code__", None)
        key = (getattr(send, "__module__", None), getattr(send, "__qualname__", None))
        if code is None or key not in _PASS_THROUGH:
            return None  # an unknown wrapper may observe or change what is sent
        cells = dict(zip(code.co_freevars, send.__closure__ or (), strict=False))
        inner = cells.get("send")
        if inner is None:
            return None
        send = inner.cell_contents
    return None


def _known_uvicorn() -> bool:
    try:
        import uvicorn
    except ImportError:
        return False
    try:
        version = tuple(int(part) for part in uvicorn.__version__.split(".")[:2])
    except ValueError:
        return False
    low, high = KNOWN_UVICORN
    return low <= version < high


def _protocol_path(protocol: Any, method: str) -> DirectPath | None:
    cls = type(protocol)
    where = (cls.__module__, cls.__qualname__, method)
    implementation = _IMPLEMENTATIONS.get(where)
    if implementation is None:
        return None
    name, make_check = implementation
    check = _CHECKS.get(name)
    if check is None:
        check = _CHECKS[name] = make_check()
    return DirectPath(name, protocol, check)


# Each check mirrors the branch of uvicorn's ASGI send that writes a data frame
# without waiting, and refuses when an extension was negotiated or frames are
# logged; anything else (the handshake still running - the legacy implementation
# completes it after accept() returns -, waiting for writability, a close, an
# error) is left to that send. Checked at every write: cheap attribute reads.


def _sansio_open() -> Callable[[Any], bool]:
    from websockets.protocol import State

    open_ = State.OPEN

    def is_open(protocol: Any) -> bool:
        conn = protocol.conn
        return (
            protocol.handshake_complete
            and not protocol.close_sent
            and not protocol.disconnected
            and protocol.initial_response is None
            and protocol.writable.is_set()
            and conn.state is open_
            and not conn.extensions
            and not conn.debug
        )

    return is_open


def _legacy_open() -> Callable[[Any], bool]:
    from websockets.protocol import State

    open_ = State.OPEN

    def is_open(protocol: Any) -> bool:
        return (
            protocol.handshake_completed_event.is_set()
            and not protocol.closed_event.is_set()
            and protocol.initial_response is None
            and protocol.state is open_
            and not protocol.transfer_data_task.done()
            and protocol._fragmented_message_waiter is None
            and not protocol._paused
            and not protocol.extensions
            and not protocol.debug
            and not protocol.transport.is_closing()
        )

    return is_open


def _wsproto_open() -> Callable[[Any], bool]:
    from wsproto.connection import ConnectionState

    open_ = ConnectionState.OPEN

    def is_open(protocol: Any) -> bool:
        conn = protocol.conn
        connection = conn.connection
        return (
            protocol.handshake_complete
            and not protocol.close_sent
            and not protocol.disconnected
            and not protocol.response_started
            and protocol.writable.is_set()
            and connection is not None
            and conn.state is open_
            and not connection._proto.extensions
            and not protocol.transport.is_closing()
        )

    return is_open


_IMPLEMENTATIONS: dict[tuple[str, str, str], tuple[str, Callable[[], Callable[[Any], bool]]]] = {
    (
        "uvicorn.protocols.websockets.websockets_sansio_impl",
        "WebSocketsSansIOProtocol",
        "send",
    ): ("websockets-sansio", _sansio_open),
    ("uvicorn.protocols.websockets.websockets_impl", "WebSocketProtocol", "asgi_send"): (
        "websockets",
        _legacy_open,
    ),
    ("uvicorn.protocols.websockets.wsproto_impl", "WSProtocol", "send"): (
        "wsproto",
        _wsproto_open,
    ),
}
_CHECKS: dict[str, Callable[[Any], bool]] = {}  # built once per implementation, on first use
