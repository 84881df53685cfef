"""The Transport protocol: how the registry talks to one socket.

A transport wraps an already-accepted WebSocket. It needs two coroutines::

    class MyTransport:
        async def send(self, data: str | bytes) -> None: ...   # str: text frame, bytes: binary
        async def close(self, code: int, reason: str) -> None: ...

``send`` may wait (back-pressure); the registry calls it from one writer task per
connection, never concurrently for the same connection. ``close`` must be safe to
call on a socket that is already closed.

A transport may add a non-blocking fast path, :meth:`SupportsSendNowait.send_nowait`;
the registry then writes directly while nothing is queued, and falls back to the
queue when the method returns ``False``.

A transport may also offer ``abort() -> None``: drop the socket at once without
a closing handshake. The registry calls it when ``close`` does not finish within
its ``close_timeout`` (a stalled peer whose buffers are full cannot take a close
frame).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["SupportsSendNowait", "Transport"]


@runtime_checkable
class Transport(Protocol):
    """A WebSocket the registry can write to and close."""

    async def send(self, data: str | bytes) -> None:
        """Send one frame: text for ``str``, binary for ``bytes``.

        May wait for the peer (back-pressure). Raises any exception when the
        socket is broken; the registry then unregisters the connection.
        """
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` and ``reason``. Idempotent."""
        ...


@runtime_checkable
class SupportsSendNowait(Protocol):
    """Optional fast path of a transport: write without waiting."""

    def send_nowait(self, data: str | bytes) -> bool:
        """Write ``data`` at once if that cannot block.

        Returns:
            ``True`` if the frame was handed to the socket, ``False`` if the
            caller must queue it and use :meth:`Transport.send` instead.

        Raises:
            Exception: any error when the socket is broken.
        """
        ...
