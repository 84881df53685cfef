"""Adapters binding the registry to WebSocket servers.

Each adapter is an optional extra, imported only when its module is:
``wsregistry.adapters.websockets`` (``pip install 'wsregistry[websockets]'``),
``wsregistry.adapters.starlette`` (``[starlette]``),
``wsregistry.adapters.fastapi`` (``[fastapi]``) and
``wsregistry.adapters.uvicorn`` (``[uvicorn]``, drain-before-shutdown server).

This package itself is framework-free: it holds what every adapter shares.

* :class:`EndpointOptions` lists the options every endpoint takes as keywords
  (hooks, ``Origin`` allow-list, limits, refusal mode, inbound size, heartbeat).

* The authentication hook returns an :class:`Identity` to admit a connection, or
  ``None`` (or raises :class:`Refuse`) to refuse it. It runs **before** the
  connection is accepted and registered.
* :class:`RefusalMode` chooses how refusals look on the wire:

  ======================  ====================  =====================
  check                   ``HTTP`` (default)    ``CLOSE`` (browser)
  ======================  ====================  =====================
  authentication          HTTP 403              accept, close 4401
  ``Origin`` not allowed  HTTP 403              accept, close 4403
  connection limit        HTTP 429              accept, close 4429
  ``Refuse(...)``         its ``status``        its ``code``
  registry not running    HTTP 503              accept, close 1001
  ======================  ====================  =====================

  On an ASGI server without the WebSocket Denial Response extension, strict
  mode falls back to closing before accept, which the ASGI spec turns into an
  HTTP 403 whatever the check.
* ``Origin``: when ``allowed_origins`` is given, the header must match one entry
  exactly after normalisation (scheme and host lower-cased, IDNA, default port
  dropped; ``null`` matches only ``"null"``). A request *without* ``Origin`` is
  allowed by default (browsers always send it, so cross-site hijacking needs
  it; native clients often omit it); ``allow_missing_origin=False`` refuses it.
* :class:`LimitPolicy` applies when a key already holds
  ``max_connections_per_key`` connections of this process (counting handshakes
  in progress at the same endpoint).
* Inbound messages over ``max_message_size`` bytes close the connection with
  1009 (message too big).
"""

from __future__ import annotations

from ._handshake import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Identity,
    LimitPolicy,
    Refusal,
    RefusalMode,
    Refuse,
)
from ._session import EndpointOptions

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "EndpointOptions",
    "Identity",
    "LimitPolicy",
    "Refusal",
    "RefusalMode",
    "Refuse",
]
