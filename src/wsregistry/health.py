"""Readiness and liveness for load balancers and Kubernetes probes.

No extra needed: the endpoints are plain ASGI apps (Starlette, FastAPI or any
ASGI router mounts them in one line) and :func:`process_request` serves the
same answers from a ``websockets`` server's ``process_request`` hook.

* **Readiness** (``/readyz``): 200 while every registry is running and its
  backend reaches its broker, else 503. A node whose broker link is down still
  delivers locally, but messages to other processes do not get through: stop
  routing new clients to it, do not restart it (the backend reconnects).
* **Liveness** (``/livez``): 200 whenever the event loop answers. It does not
  look at the broker, so a broker outage never restarts every pod at once.

Both answer with a small JSON body and do no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import Registry  # the public name: an integration uses the public API

__all__ = [
    "LivenessEndpoint",
    "Readiness",
    "ReadinessEndpoint",
    "RegistryReadiness",
    "process_request",
    "readiness",
]


@dataclass(frozen=True)
class RegistryReadiness:
    """The readiness of one registry.

    Attributes:
        name: the registry's label.
        running: whether it is running (entered and not closing).
        backend: the backend's name.
        backend_connected: whether the backend reaches its broker.
    """

    name: str
    running: bool
    backend: str
    backend_connected: bool

    @property
    def ready(self) -> bool:
        """Running, with its backend connected."""
        return self.running and self.backend_connected


@dataclass(frozen=True)
class Readiness:
    """Whether a process should receive new clients, and why not.

    Attributes:
        ready: every registry is running with its backend connected.
        registries: each registry's own state.
    """

    ready: bool
    registries: tuple[RegistryReadiness, ...]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the body of the readiness endpoint)."""
        return {
            "ready": self.ready,
            "registries": {
                item.name: {
                    "ready": item.ready,
                    "running": item.running,
                    "backend": item.backend,
                    "backend_connected": item.backend_connected,
                }
                for item in self.registries
            },
        }


def readiness(registries: Registry | Mapping[str, Registry]) -> Readiness:
    """Check the registries now. Non-blocking, no I/O: it reads their stats.

    Raises:
        TypeError: ``registries`` holds something other than registries.
    """
    items = []
    for name, registry in _named(registries).items():
        health = registry.backend.health()
        items.append(RegistryReadiness(name, registry.running, health.name, health.connected))
    return Readiness(all(item.ready for item in items), tuple(items))


Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]


class ReadinessEndpoint:
    """ASGI app: 200 when :func:`readiness` says ready, else 503; a JSON body either way.

    ``Route("/readyz", ReadinessEndpoint(registry))`` in Starlette,
    ``app.add_route("/readyz", ReadinessEndpoint(registry))`` in FastAPI.

    Args:
        registries: a registry, or a mapping of names to registries.
    """

    def __init__(self, registries: Registry | Mapping[str, Registry]) -> None:
        self.registries = _named(registries)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (ASGI)."""
        state = readiness(self.registries)
        await _respond(scope, send, 200 if state.ready else 503, state.as_dict())


class LivenessEndpoint:
    """ASGI app: always 200 ``{"alive": true}`` (the event loop answered)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request (ASGI)."""
        await _respond(scope, send, 200, {"alive": True})


def process_request(
    registries: Registry | Mapping[str, Registry],
    *,
    ready_path: str = "/readyz",
    live_path: str = "/livez",
    then: Callable[[Any, Any], Any] | None = None,
) -> Callable[[Any, Any], Awaitable[Any]]:
    """A ``websockets`` ``process_request`` hook answering the health paths.

    Requests for ``ready_path``/``live_path`` get the same answers as the ASGI
    endpoints; any other request goes on to ``then`` (typically the adapter's
    ``RegistryHandler.process_request``), or to the WebSocket handshake::

        handler = RegistryHandler(registry, authenticate=authenticate)
        hook = health.process_request(registry, then=handler.process_request)
        async with websockets.asyncio.server.serve(handler, host, port, process_request=hook):
            ...

    Raises:
        TypeError: ``registries`` holds something other than registries.
    """
    named = _named(registries)

    async def hook(connection: Any, request: Any) -> Any:
        path = request.path.split("?", 1)[0]
        if path == ready_path:
            state = readiness(named)
            return _ws_response(connection, 200 if state.ready else 503, state.as_dict())
        if path == live_path:
            return _ws_response(connection, 200, {"alive": True})
        if then is None:
            return None
        result = then(connection, request)
        if hasattr(result, "__await__"):
            result = await result
        return result

    return hook


def _ws_response(connection: Any, status: int, body: dict[str, Any]) -> Any:
    response = connection.respond(status, json.dumps(body) + "\n")
    del response.headers["Content-Type"]  # respond() set text/plain
    response.headers["Content-Type"] = "application/json"
    return response


async def _respond(scope: Scope, send: Send, status: int, body: dict[str, Any]) -> None:
    if scope["type"] != "http":
        raise ValueError(f"health endpoints serve HTTP, got a {scope['type']!r} scope")
    data = (json.dumps(body) + "\n").encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send(
        {"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else data}
    )


def _named(registries: Registry | Mapping[str, Registry]) -> dict[str, Registry]:
    named = {"default": registries} if isinstance(registries, Registry) else dict(registries)
    for name, registry in named.items():
        if not isinstance(registry, Registry):
            raise TypeError(
                "registries must be a Registry or a mapping of names to registries, "
                f"got {type(registry).__name__} for {name!r}"
            )
    return named
