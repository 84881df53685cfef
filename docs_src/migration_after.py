"""The same application on wsregistry's drop-in manager: an import change and a lifespan."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect

# --8<-- [start:import]
from wsregistry.compat.connection_manager import (
    ConnectionManager,
    get_websocket_manager,
    notify_frontend,
)

# --8<-- [end:import]

# --8<-- [start:app]
manager = get_websocket_manager()
app = FastAPI(lifespan=manager.lifespan)  # starts the registry; drains and closes on shutdown


@app.websocket("/ws/{user_id}")
async def websocket_endpoint(websocket: WebSocket, user_id: str) -> None:
    await manager.connect(user_id, websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        manager.disconnect(user_id)  # removes this handler's own connection only


@app.post("/login/{user_id}/mfa")
async def require_mfa(
    user_id: str, manager: Annotated[ConnectionManager, Depends(get_websocket_manager)]
) -> dict[str, bool]:
    await notify_frontend(user_id, manager, {"message": "MFA_REQUIRED"})  # 400 if offline
    return {"ok": True}
    # --8<-- [end:app]
