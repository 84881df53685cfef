"""The registry on FastAPI: lifespan, dependency and WebSocket endpoint.

Install with ``pip install 'wsregistry[fastapi]'``. FastAPI's ``WebSocket`` is
Starlette's, so the transport and the endpoint are those of
:mod:`wsregistry.adapters.starlette`; this module adds what FastAPI users
expect::

    from fastapi import APIRouter, FastAPI, WebSocket
    from wsregistry import Registry
    from wsregistry.adapters.fastapi import (
        Identity, RegistryDep, RegistryEndpoint, registry_lifespan,
    )

    registry = Registry()

    async def authenticate(websocket: WebSocket) -> Identity | None:
        token = websocket.query_params.get("token")
        user = await users.from_token(token)            # your code
        return Identity(key=user.id, groups={"lobby"}) if user else None

    async def on_message(conn, data):
        await registry.broadcast(data, group="lobby", exclude=conn)

    chat = RegistryEndpoint(registry, authenticate=authenticate, on_message=on_message)

    router = APIRouter()
    router.add_api_websocket_route("/ws", chat.handle)

    @router.post("/notify/{user_id}")
    async def notify(user_id: str, registry: RegistryDep) -> dict[str, int]:
        return {"delivered": await registry.send(user_id, {"type": "notice"})}

    app = FastAPI(lifespan=registry_lifespan(registry))
    app.include_router(router)

Your own endpoint can also hand over after its own dependencies ran::

    @router.websocket("/ws")
    async def ws(websocket: WebSocket, user: User = Depends(current_user)):
        await chat.handle(websocket)

Heartbeats, size limits and shutdown are as in
:mod:`wsregistry.adapters.starlette` (uvicorn closes sockets with 1012 before the
lifespan shutdown; use :class:`wsregistry.adapters.uvicorn.Server` to drain and
close with 1001 first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated, Any

try:
    from fastapi import Depends
    from starlette.requests import HTTPConnection
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise ImportError(
        "wsregistry.adapters.fastapi needs FastAPI: pip install 'wsregistry[fastapi]'"
    ) from exc

from ..registry import Registry
from ._handshake import Identity, LimitPolicy, RefusalMode, Refuse
from ._session import EndpointOptions
from ._workers import warn_if_split
from .starlette import RegistryEndpoint, StarletteTransport

__all__ = [
    "STATE_KEY",
    "EndpointOptions",
    "Identity",
    "LimitPolicy",
    "RefusalMode",
    "Refuse",
    "RegistryDep",
    "RegistryEndpoint",
    "StarletteTransport",
    "get_registry",
    "registry_lifespan",
]

STATE_KEY = "wsregistry"
"""The name under which :func:`registry_lifespan` puts the registry in the lifespan state."""

Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def registry_lifespan(
    registry: Registry, *, lifespan: Lifespan | None = None
) -> Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]:
    """A FastAPI/Starlette lifespan that runs ``registry`` for the life of the app.

    The registry starts before your own ``lifespan`` (so its startup may use
    it) and stops after it: leaving drains queues and closes what is left with
    1001. The registry is put in the lifespan state under :data:`STATE_KEY`,
    where :func:`get_registry` finds it; a ``dict`` your lifespan yields is
    merged into that state.

    Args:
        registry: a registry that was not started yet.
        lifespan: your own lifespan, run inside the registry's.

    Returns:
        A value for ``FastAPI(lifespan=...)`` / ``Starlette(lifespan=...)``.

    Raises:
        TypeError: ``registry`` is not a :class:`~wsregistry.Registry`.
    """
    if not isinstance(registry, Registry):
        raise TypeError(f"registry must be a wsregistry Registry, got {type(registry).__name__}")

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[dict[str, Any]]:
        async with registry:
            warn_if_split(registry)
            if lifespan is None:
                yield {STATE_KEY: registry}
                return
            async with lifespan(app) as state:
                yield {**(state or {}), STATE_KEY: registry}

    return run


def get_registry(connection: HTTPConnection) -> Registry:
    """FastAPI dependency: the registry :func:`registry_lifespan` started.

    Works in HTTP and WebSocket routes. Non-blocking.

    Raises:
        RuntimeError: the app was not created with :func:`registry_lifespan`.
    """
    registry = connection.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(registry, Registry):
        raise RuntimeError(
            "no wsregistry Registry in the lifespan state; "
            "create the app with FastAPI(lifespan=registry_lifespan(registry))"
        )
    return registry


RegistryDep = Annotated[Registry, Depends(get_registry)]
"""``registry: RegistryDep`` in a route's parameters injects the running registry."""
