"""Backends: how registries in several processes reach each other.

``MemoryBackend`` (the default) lives here; ``RedisBackend`` is in
:mod:`wsregistry.backends.redis` and needs ``pip install 'wsregistry[redis]'``.
"""

from __future__ import annotations

from ..envelope import Envelope, EnvelopeKind
from .base import Backend, LocalNode
from .memory import MemoryBackend, MemoryHub

__all__ = ["Backend", "Envelope", "EnvelopeKind", "LocalNode", "MemoryBackend", "MemoryHub"]
