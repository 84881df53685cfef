"""The demo application: FastAPI routes, the WebSocket endpoint and the registry.

Run it::

    make demo                                   # http://127.0.0.1:8000
    uvicorn --app-dir examples demo.app:app     # the same, by hand

Several workers, unchanged code: point every worker at one Redis::

    WSREGISTRY_REDIS_URL=redis://127.0.0.1:6379/0 \
        uvicorn --app-dir examples demo.app:app --workers 2

Settings (environment variables):

* ``WSREGISTRY_REDIS_URL``: use the Redis backend (default: in-memory, one process).
* ``WSREGISTRY_REDIS_NAMESPACE``: the Redis key prefix (default ``wsregistry``).
* ``WSREGISTRY_DEMO_SECRET``: the key that signs sessions (every worker needs
  the same one; the default is for local use only).
* ``WSREGISTRY_DEMO_ORIGINS``: comma-separated origins allowed to open the
  WebSocket (default: ``http://127.0.0.1:8000,http://localhost:8000``).

Operations: ``/metrics`` (Prometheus, this worker's registry), ``/readyz``
(503 while the registry is stopped or its broker is unreachable), ``/livez``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Cookie, FastAPI, HTTPException, Response, WebSocket
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from starlette.routing import Route

from wsregistry import Registry
from wsregistry.adapters.fastapi import (
    Identity,
    RefusalMode,
    RegistryDep,
    RegistryEndpoint,
    registry_lifespan,
)
from wsregistry.health import LivenessEndpoint, ReadinessEndpoint
from wsregistry.prometheus import MetricsEndpoint, RegistryCollector

from .auth import COOKIE_NAME, MAX_AGE_SECONDS, Signer
from .chat import Chat

REDIS_URL_ENV = "WSREGISTRY_REDIS_URL"
REDIS_NAMESPACE_ENV = "WSREGISTRY_REDIS_NAMESPACE"
SECRET_ENV = "WSREGISTRY_DEMO_SECRET"
ORIGINS_ENV = "WSREGISTRY_DEMO_ORIGINS"
DEFAULT_ORIGINS = ("http://127.0.0.1:8000", "http://localhost:8000")
DEV_SECRET = "wsregistry-demo-dev-secret-do-not-deploy"
STATIC = Path(__file__).parent / "static"


class Login(BaseModel):
    name: str


def registry_from_env() -> Registry:
    """A registry on Redis when ``WSREGISTRY_REDIS_URL`` is set, else in memory."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        return Registry()
    from wsregistry.backends.redis import RedisBackend

    namespace = os.environ.get(REDIS_NAMESPACE_ENV) or "wsregistry"
    return Registry(backend=RedisBackend(url, namespace=namespace))


def create_app(
    *,
    registry: Registry | None = None,
    secret: str | None = None,
    allowed_origins: list[str] | None = None,
) -> FastAPI:
    """Build the demo app; arguments default to the environment (see the module doc)."""
    registry = registry if registry is not None else registry_from_env()
    signer = Signer(secret or os.environ.get(SECRET_ENV) or DEV_SECRET)
    if allowed_origins is None:
        configured = os.environ.get(ORIGINS_ENV)
        allowed_origins = configured.split(",") if configured else list(DEFAULT_ORIGINS)
    chat = Chat(registry)

    async def authenticate(websocket: WebSocket) -> Identity | None:
        # Runs before the socket is accepted: a browser sends the session cookie,
        # other clients may pass the token from /api/login as ?token=.
        token = websocket.cookies.get(COOKIE_NAME) or websocket.query_params.get("token")
        name = signer.verify(token)
        return Identity(key=name) if name else None

    endpoint = RegistryEndpoint(
        registry,
        authenticate=authenticate,
        on_connect=chat.on_connect,
        on_message=chat.on_message,
        on_disconnect=chat.on_disconnect,
        allowed_origins=allowed_origins,
        refusal=RefusalMode.CLOSE,  # the page can read 4401/4403 and ask to sign in
        max_connections_per_key=20,
        max_message_size=16 * 1024,
    )

    router = APIRouter()
    router.add_api_websocket_route("/ws", endpoint.handle)

    @router.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @router.post("/api/login")
    async def login(body: Login, response: Response) -> dict[str, str]:
        name = body.name.strip()
        try:
            token = signer.issue(name)
        except ValueError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        response.set_cookie(
            COOKIE_NAME, token, max_age=MAX_AGE_SECONDS, httponly=True, samesite="strict"
        )
        return {"name": name, "token": token}

    @router.post("/api/logout")
    async def logout(response: Response) -> dict[str, bool]:
        response.delete_cookie(COOKIE_NAME)
        return {"ok": True}

    @router.get("/api/me")
    async def me(
        session: Annotated[str | None, Cookie(alias=COOKIE_NAME)] = None,
    ) -> dict[str, str]:
        name = signer.verify(session)
        if name is None:
            raise HTTPException(status_code=401, detail="not signed in")
        return {"name": name}

    @router.get("/api/online")
    async def online(registry: RegistryDep) -> dict[str, dict[str, int]]:
        keys = sorted(str(key) for key in await registry.online_keys())
        return {"users": {key: await registry.online_count(key) for key in keys}}

    @router.get("/api/health")
    async def health(registry: RegistryDep) -> dict[str, Any]:
        stats = registry.stats()
        return {
            "node": registry.node_id,
            "pid": os.getpid(),
            "backend": type(registry.backend).__name__,
            "connections": stats.connections,
            "sent": stats.sent,
            "backend_errors": stats.backend_errors,
        }

    app = FastAPI(title="wsregistry demo", lifespan=registry_lifespan(registry))
    app.include_router(router)
    # Operations: Prometheus metrics of this worker, readiness and liveness probes.
    metrics = CollectorRegistry()  # per app: tests build several apps in one process
    RegistryCollector(registry, prometheus_registry=metrics)
    app.router.routes += [
        Route("/metrics", MetricsEndpoint(metrics)),
        Route("/readyz", ReadinessEndpoint(registry)),
        Route("/livez", LivenessEndpoint()),
    ]
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


app = create_app()
