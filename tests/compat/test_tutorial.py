"""The FastAPI tutorial's chat, tested the way FastAPI's "Testing WebSockets" page does.

Plain synchronous tests with ``TestClient`` and ``websocket_connect``, no server,
no lifespan: the app in ``tutorial_app.py`` is the tutorial's with its manager
class replaced by an import of :class:`wsregistry.compat.tutorial.ConnectionManager`.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from .tutorial_app import app, manager


def test_read_main() -> None:
    client = TestClient(app)
    response = client.get("/")
    assert response.status_code == 200


def test_websocket() -> None:
    client = TestClient(app)
    with client.websocket_connect("/ws/1") as websocket:
        websocket.send_text("hello")
        assert websocket.receive_text() == "You wrote: hello"
        assert websocket.receive_text() == "Client #1 says: hello"


def test_two_clients_chat_and_hear_each_other_leave() -> None:
    client = TestClient(app)
    with client.websocket_connect("/ws/1") as one, client.websocket_connect("/ws/2") as two:
        one.send_text("hi")
        assert one.receive_text() == "You wrote: hi"
        assert one.receive_text() == "Client #1 says: hi"
        assert two.receive_text() == "Client #1 says: hi"
        two.close()
        assert one.receive_text() == "Client #2 left the chat"
    assert manager.active_connections == []


def test_the_same_again_in_one_client_context() -> None:
    with TestClient(app) as client:  # one event loop for every socket
        for round_ in range(3):
            with client.websocket_connect(f"/ws/{round_}") as websocket:
                websocket.send_text("again")
                assert websocket.receive_text() == "You wrote: again"
                assert websocket.receive_text() == f"Client #{round_} says: again"
