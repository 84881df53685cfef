"""The hand-written manager many FastAPI applications start with: what the migration replaces."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, WebSocket, WebSocketDisconnect


# --8<-- [start:manager]
class ConnectionManager:
    def __init__(self) -> None:
        self.active_connections: dict[str, WebSocket] = {}

    async def connect(self, user_id: str, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections[user_id] = websocket  # a second tab replaces the first

    def disconnect(self, user_id: str) -> None:
        self.active_connections.pop(user_id, None)  # may remove a newer reconnect

    async def send_message(self, user_id: str, message: dict[str, Any]) -> None:
        websocket = self.active_connections.get(user_id)
        if websocket:
            await websocket.send_json(message)

    async def broadcast(self, message: dict[str, Any]) -> None:
        for websocket in self.active_connections.values():  # one slow client stalls all
            await websocket.send_json(message)  # one dead client raises out of the loop

    def get_connection(self, user_id: str) -> WebSocket | None:
        return self.active_connections.get(user_id)


@lru_cache
def get_websocket_manager() -> ConnectionManager:
    return ConnectionManager()


async def notify_frontend(
    user_id: str, manager: ConnectionManager, json_data: dict[str, Any]
) -> bool:
    if manager.get_connection(user_id):
        await manager.send_message(user_id, json_data)
        return True
    if json_data.get("message") == "MFA_REQUIRED":
        raise HTTPException(status_code=400, detail=f"No WebSocket connection for user {user_id}")
    return False
    # --8<-- [end:manager]


manager = get_websocket_manager()
app = FastAPI()


@app.websocket("/ws/{user_id}")
async def websocket_endpoint(websocket: WebSocket, user_id: str) -> None:
    await manager.connect(user_id, websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        manager.disconnect(user_id)


@app.post("/login/{user_id}/mfa")
async def require_mfa(
    user_id: str, manager: Annotated[ConnectionManager, Depends(get_websocket_manager)]
) -> dict[str, bool]:
    await notify_frontend(user_id, manager, {"message": "MFA_REQUIRED"})
    return {"ok": True}
