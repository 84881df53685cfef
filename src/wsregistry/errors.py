"""Errors raised by wsregistry.

Every error the library raises on purpose derives from :class:`WSRegistryError`,
so ``except WSRegistryError`` catches them all::

    WSRegistryError
    ├── RegistryClosed          (also RuntimeError) the registry is not open for calls
    │   └── RegistryNotStarted  used before ``async with registry``
    ├── RegistryAlreadyRunning  (also RuntimeError) entered while it is running
    ├── ConnectionClosed        sending on a connection that is no longer registered
    ├── NotConnected            (also LookupError) ``send(..., require=True)`` found nobody
    ├── SerializationError      (also TypeError) a message could not be encoded
    └── BackendUnavailable      (also ConnectionError) the broker cannot be reached

``except RegistryClosed`` covers every "not running" state: before start,
while shutting down and after close.

"We closed it" (:class:`RegistryClosed`, :class:`ConnectionClosed`) is kept apart
from "it broke" (:class:`BackendUnavailable`). Bad arguments raise plain
:class:`TypeError` or :class:`ValueError`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendUnavailable",
    "ConnectionClosed",
    "NotConnected",
    "RegistryAlreadyRunning",
    "RegistryClosed",
    "RegistryNotStarted",
    "SerializationError",
    "WSRegistryError",
]


class WSRegistryError(Exception):
    """Base class of every error raised by wsregistry."""


class RegistryClosed(WSRegistryError, RuntimeError):
    """The registry is not open for calls: it is shutting down or closed.

    Before start, :class:`RegistryNotStarted` (a subclass) is raised instead.

    Attributes:
        operation: the name of the call that was refused.
    """

    def __init__(self, operation: str, detail: str | None = None) -> None:
        self.operation = operation
        super().__init__(detail or f"Registry.{operation}() called after the registry was closed")


class RegistryNotStarted(RegistryClosed):
    """The registry was used before ``async with registry:`` started it.

    A subclass of :class:`RegistryClosed`: the registry is not open yet.
    """

    def __init__(self, operation: str) -> None:
        self.operation = operation
        RuntimeError.__init__(
            self,
            f"Registry.{operation}() needs a running registry; enter 'async with registry:' first",
        )


class RegistryAlreadyRunning(WSRegistryError, RuntimeError):
    """``async with registry`` while that registry is already running.

    A registry runs once at a time; it can be entered again after it exits.
    """

    def __init__(self) -> None:
        super().__init__(
            "this Registry is already running; leave 'async with registry' before entering it again"
        )


class ConnectionClosed(WSRegistryError):
    """A message was sent on a connection that is no longer registered.

    Attributes:
        connection_id: the id of the connection.
        code: the close code, when the registry closed it (else ``None``).
    """

    def __init__(self, connection_id: str, code: int | None = None) -> None:
        self.connection_id = connection_id
        self.code = code
        detail = f" (close code {code})" if code is not None else ""
        super().__init__(f"connection {connection_id} is closed{detail}")


class NotConnected(WSRegistryError, LookupError):
    """``send(key, ..., require=True)`` found no connection of the key anywhere.

    Attributes:
        key: the key that had no live connection.
    """

    def __init__(self, key: str | int) -> None:
        self.key = key
        super().__init__(f"no live connection for key {key!r}")


class SerializationError(WSRegistryError, TypeError):
    """A message could not be serialised; nothing was sent.

    Attributes:
        message_type: the type of the message that failed.
    """

    def __init__(self, message: Any, cause: BaseException | None = None) -> None:
        self.message_type = type(message)
        reason = f": {cause}" if cause is not None else ""
        super().__init__(
            f"cannot serialise a message of type {self.message_type.__name__}{reason}; "
            "send dict/list (JSON), str (text frame) or bytes (binary frame), "
            "or give Registry a serializer"
        )


class BackendUnavailable(WSRegistryError, ConnectionError):
    """The backend's broker cannot be reached (it broke; nobody closed it).

    Attributes:
        backend: a short name of the backend, e.g. ``"redis"``.
    """

    def __init__(self, backend: str, detail: str = "") -> None:
        self.backend = backend
        super().__init__(f"{backend} backend unavailable" + (f": {detail}" if detail else ""))
