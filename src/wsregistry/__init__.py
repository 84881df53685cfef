"""wsregistry: the registry of live WebSocket connections.

Connect, disconnect, send to a key (every tab, every process), broadcast to
everyone or a group, look up who is online. The core depends on anyio only.
"""

from __future__ import annotations

from ._encode import json_serializer
from ._types import Key, Payload, Serializer
from .backends.base import Backend, LocalNode
from .backends.memory import MemoryBackend, MemoryHub
from .codes import CloseCode
from .connection import Connection, ConnectionState
from .envelope import Envelope, EnvelopeKind
from .errors import (
    BackendUnavailable,
    ConnectionClosed,
    NotConnected,
    RegistryAlreadyRunning,
    RegistryClosed,
    RegistryNotStarted,
    SerializationError,
    WSRegistryError,
)
from .limits import OverflowPolicy, QueueLimits
from .registry import Registry
from .stats import BackendHealth, RegistryStats
from .transport import SupportsSendNowait, Transport

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendHealth",
    "BackendUnavailable",
    "CloseCode",
    "Connection",
    "ConnectionClosed",
    "ConnectionState",
    "Envelope",
    "EnvelopeKind",
    "Key",
    "LocalNode",
    "MemoryBackend",
    "MemoryHub",
    "NotConnected",
    "OverflowPolicy",
    "Payload",
    "QueueLimits",
    "Registry",
    "RegistryAlreadyRunning",
    "RegistryClosed",
    "RegistryNotStarted",
    "RegistryStats",
    "SerializationError",
    "Serializer",
    "SupportsSendNowait",
    "Transport",
    "WSRegistryError",
    "__version__",
    "json_serializer",
]
