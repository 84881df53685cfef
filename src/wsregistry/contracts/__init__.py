"""Contract checks to run against your own transport or backend.

wsregistry's own transports and backends pass these checks in its test suite;
run them in yours against a custom :class:`~wsregistry.Transport` or
:class:`~wsregistry.Backend`. They are plain async functions that raise
:class:`AssertionError` with a message saying what was expected, so they work
under any test runner (pytest with anyio's plugin, trio's, unittest's
``IsolatedAsyncioTestCase``). They import only the standard library and anyio.

* :func:`check_transport` — frames, order, close and the optional fast path of
  one transport, driven directly and through a :class:`~wsregistry.Registry`.
* :func:`check_backend` — the cluster semantics of registries sharing your
  backend.
"""

from __future__ import annotations

from .backend import HOSTILE_KEYS, MakeCluster, check_backend
from .transport import ConnectedTransport, MakeTransport, check_transport

__all__ = [
    "HOSTILE_KEYS",
    "ConnectedTransport",
    "MakeCluster",
    "MakeTransport",
    "check_backend",
    "check_transport",
]
