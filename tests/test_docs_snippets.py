"""Every code sample of the documentation runs here (docs_src/, included with ``--8<--``)."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from docs_src import (
    connections,
    contract_checks,
    custom_backend,
    custom_transport,
    emitter,
    fastapi_app,
    fastapi_dependencies,
    groups,
    lifecycle,
    migration_after,
    migration_before,
    nats_cluster,
    operations,
    operations_metrics,
    overflow,
    presence,
    quickstart_core,
    redis_cluster,
    serializer,
    starlette_app,
    testing_app,
    threadsafe,
    websockets_app,
    websockets_handler,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.typing import Origin

from tests.helpers import TIMEOUT, wait_until
from tests.servers import serve as serving
from wsregistry import CloseCode, Registry, RegistryClosed, RegistryNotStarted
from wsregistry.compat.connection_manager import get_websocket_manager
from wsregistry.testing import RecordingTransport

ROOT = Path(__file__).resolve().parent.parent
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


async def receive_json(client: ClientConnection) -> Any:
    with anyio.fail_after(TIMEOUT):
        return json.loads(await client.recv())


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.mark.anyio
async def test_quickstart_core(capsys: pytest.CaptureFixture[str]) -> None:
    assert await quickstart_core.main() == [
        {"type": "notice", "text": "hi"},
        {"type": "meeting"},
    ]
    assert capsys.readouterr().out == "2 True\n"


@pytest.mark.anyio
async def test_lifecycle() -> None:
    assert not Registry().running
    with pytest.raises(RegistryNotStarted):
        await Registry().send("alice", "hi")
    registry, conn = await lifecycle.main()
    assert not registry.running
    with pytest.raises(RegistryClosed):
        await registry.send("alice", "hi")
    assert isinstance(conn.transport, RecordingTransport)
    assert conn.transport.messages() == [{"type": "hello"}]  # drained before the close
    assert conn.transport.close_code == CloseCode.GOING_AWAY


@pytest.mark.anyio
async def test_connections() -> None:
    await connections.main()


@pytest.mark.anyio
async def test_groups() -> None:
    await groups.main()


@pytest.mark.anyio
async def test_presence() -> None:
    await presence.main()


@pytest.mark.anyio
async def test_overflow() -> None:
    await overflow.main()


@pytest.mark.anyio
async def test_serializer(capsys: pytest.CaptureFixture[str]) -> None:
    await serializer.main()
    assert "cannot serialise a message of type dict" in capsys.readouterr().out


@pytest.mark.anyio
async def test_custom_transport() -> None:
    assert await custom_transport.main() == ['{"cpu":0.42}']


@pytest.mark.anyio
async def test_custom_backend() -> None:
    broker = await custom_backend.main()
    # both nodes left: no subscription and no presence remain on the broker
    assert all(not subscribers for subscribers in broker.subscribers.values())
    assert not broker.presence


@pytest.mark.anyio
async def test_operations() -> None:
    body = await operations.main()
    assert body["connections"] == 1
    assert body["backend"] == "memory"


def test_operations_logging() -> None:
    logger = logging.getLogger("wsregistry")
    saved_level, saved_handlers = logger.level, logging.root.handlers[:]
    try:
        operations.configure_logging()
        assert logger.getEffectiveLevel() == logging.INFO
        assert logging.root.handlers
    finally:
        logger.setLevel(saved_level)
        logging.root.handlers[:] = saved_handlers


@pytest.mark.anyio
async def test_threadsafe() -> None:
    await threadsafe.main()


@pytest.mark.anyio
async def test_testing_app() -> None:
    await testing_app.main()


@asyncio_only
@pytest.mark.anyio
async def test_fastapi_app() -> None:
    async with (
        serving(fastapi_app.app, registry=fastapi_app.registry) as host,
        connect(f"ws://{host}/ws?token=alice-token") as alice,
        connect(f"ws://{host}/ws?token=bob-token") as bob,
    ):
        assert await receive_json(alice) == {"type": "welcome", "user": "alice"}
        assert await receive_json(bob) == {"type": "welcome", "user": "bob"}
        await alice.send("hi bob")
        assert await receive_json(bob) == {"from": "alice", "text": "hi bob"}

        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            response = await http.post("/notify/bob")
        assert response.json() == {"queued_here": 1}
        assert await receive_json(bob) == {"type": "notice"}

        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://{host}/ws?token=forged")
        assert refused.value.response.status_code == 403
    assert fastapi_app.registry.stats().connections == 0


@asyncio_only
@pytest.mark.anyio
async def test_fastapi_dependencies() -> None:
    async with serving(fastapi_dependencies.app, registry=fastapi_dependencies.registry) as host:
        async with connect(f"ws://{host}/ws?token=alice-token") as alice:
            assert await receive_json(alice) == {"type": "welcome", "user": "alice"}
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://{host}/ws?token=forged")
        assert refused.value.response.status_code == 403


async def close_code_of(url: str, **headers: str) -> int | None:
    """Connect, then return the close code the server closed with (``None`` if it did not)."""
    origin = headers.pop("origin", None)
    async with connect(
        url, origin=Origin(origin) if origin else None, additional_headers=headers
    ) as client:
        with anyio.fail_after(TIMEOUT):
            try:
                await client.recv()
            except ConnectionClosedError as exc:
                return exc.rcvd.code if exc.rcvd is not None else None
    return None


@asyncio_only
@pytest.mark.anyio
async def test_starlette_app() -> None:
    good = Origin("http://localhost:8000")
    async with serving(starlette_app.app, registry=starlette_app.registry) as host:
        url = f"ws://{host}/ws"
        async with httpx.AsyncClient(base_url=f"http://{host}") as http:
            await http.post("/login", json={"user": "alice"})
            cookie = "session=" + http.cookies["session"]
        async with (
            connect(url, origin=good, additional_headers={"Cookie": cookie}) as tab1,
            connect(url, origin=good, additional_headers={"Cookie": cookie}) as tab2,
        ):
            assert await receive_json(tab1) == {"type": "welcome", "user": "alice"}
            assert await receive_json(tab2) == {"type": "welcome", "user": "alice"}
            assert await close_code_of(url, origin=good, Cookie=cookie) == 4429  # third tab
        assert await close_code_of(url, origin="https://evil.example", Cookie=cookie) == 4403
        assert await close_code_of(url, Cookie=cookie) == 4403  # no Origin at all
        assert await close_code_of(url, origin=good) == 4401  # no session cookie


@asyncio_only
@pytest.mark.anyio
async def test_websockets_app() -> None:
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async with contextlib.AsyncExitStack() as clients:
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                lambda task_status: websockets_app.main(port=0, task_status=task_status)
            )
            url = f"ws://127.0.0.1:{port}"
            with pytest.raises(InvalidStatus) as refused:
                await connect(url, additional_headers=bearer("forged"))
            assert refused.value.response.status_code == 403

            alice = await clients.enter_async_context(
                connect(url, additional_headers=bearer("alice-token"))
            )
            bob = await clients.enter_async_context(
                connect(url, additional_headers=bearer("bob-token"))
            )
            assert await receive_json(alice) == {"type": "welcome", "user": "alice"}
            assert await receive_json(bob) == {"type": "welcome", "user": "bob"}
            await alice.send("hello")
            with anyio.fail_after(TIMEOUT):
                assert await bob.recv() == "hello"
            tg.cancel_scope.cancel()  # stop the server
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            await bob.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CloseCode.GOING_AWAY


@asyncio_only
@pytest.mark.anyio
async def test_websockets_handler() -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: websockets_handler.main(port=0, task_status=task_status)
        )
        url = f"ws://127.0.0.1:{port}"
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == 403
        async with connect(url, additional_headers={"X-User": "carol"}) as carol:
            assert await receive_json(carol) == {"type": "welcome", "user": "carol"}
            tg.cancel_scope.cancel()
            with (  # the server is stopping: shielded from the cancel we just made
                anyio.CancelScope(shield=True),
                anyio.fail_after(TIMEOUT),
                pytest.raises(ConnectionClosed) as closed,
            ):
                await carol.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CloseCode.GOING_AWAY


@pytest.fixture
def namespace() -> str:
    """A namespace nobody else uses on the shared Redis."""
    return "wsr-docs-" + uuid.uuid4().hex[:12]


@pytest.mark.redis
@asyncio_only
@pytest.mark.anyio
async def test_redis_cluster(namespace: str) -> None:
    await redis_cluster.main(namespace)


@pytest.mark.nats
@asyncio_only
@pytest.mark.anyio
async def test_nats_cluster() -> None:
    import uuid

    from tests.backends.nats_support import SHARED_NATS, delete_streams

    namespace = "wsrtest-" + uuid.uuid4().hex[:12]
    try:
        await nats_cluster.main(namespace)
    finally:
        await delete_streams(SHARED_NATS, namespace)


@pytest.mark.redis
@asyncio_only
@pytest.mark.anyio
async def test_emitters(namespace: str) -> None:
    async with redis_cluster.make_registry(namespace) as registry:
        tab = RecordingTransport()
        await registry.connect(tab, key=7)
        assert await anyio.to_thread.run_sync(lambda: emitter.report_ready(7, namespace=namespace))
        assert not await anyio.to_thread.run_sync(
            lambda: emitter.report_ready(8, namespace=namespace)
        )
        assert await emitter.announce(5, namespace=namespace) == 1  # one server process
        with anyio.fail_after(TIMEOUT):
            await tab.wait_for(2)
        assert tab.messages() == [
            {"type": "report-ready"},
            {"type": "maintenance", "in_minutes": 5},
        ]


def _registered_socket_port(user_id: str) -> int | None:
    """The client port of the socket the hand-written manager holds for ``user_id``."""
    websocket = migration_before.manager.get_connection(user_id)
    return websocket.client.port if websocket is not None and websocket.client else None


@asyncio_only
@pytest.mark.anyio
async def test_migration_before_loses_the_first_tab() -> None:
    """What the guide says of the hand-written manager: a second tab replaces the first."""
    async with contextlib.AsyncExitStack() as clients:
        async with serving(migration_before.app) as host:
            tab1 = await clients.enter_async_context(connect(f"ws://{host}/ws/alice"))
            tab2 = await clients.enter_async_context(connect(f"ws://{host}/ws/alice"))
            await wait_until(lambda: _registered_socket_port("alice") == tab2.local_address[1])
            async with httpx.AsyncClient(base_url=f"http://{host}") as http:
                assert (await http.post("/login/alice/mfa")).status_code == 200
            assert await receive_json(tab2) == {"message": "MFA_REQUIRED"}
        # the server has stopped: the first tab was closed without ever getting the message
        with anyio.fail_after(TIMEOUT), pytest.raises(ConnectionClosed):
            await tab1.recv()


@asyncio_only
@pytest.mark.anyio
async def test_migration_after_reaches_every_tab() -> None:
    registry = migration_after.manager.registry
    # get_websocket_manager() is a process-wide cache that other tests clear: pin the
    # dependency to the manager this module built at import, as a fresh process would have.
    overrides = migration_after.app.dependency_overrides
    overrides[get_websocket_manager] = lambda: migration_after.manager
    try:
        await _check_migration_after(registry)
    finally:
        overrides.pop(get_websocket_manager, None)


async def _check_migration_after(registry: Registry) -> None:
    async with serving(migration_after.app, registry=registry) as host:
        async with (
            connect(f"ws://{host}/ws/alice") as tab1,
            connect(f"ws://{host}/ws/alice") as tab2,
        ):
            await wait_until(lambda: len(registry.lookup("alice")) == 2)
            async with httpx.AsyncClient(base_url=f"http://{host}") as http:
                assert (await http.post("/login/alice/mfa")).status_code == 200
                assert await receive_json(tab1) == {"message": "MFA_REQUIRED"}
                assert await receive_json(tab2) == {"message": "MFA_REQUIRED"}
                assert (await http.post("/login/bob/mfa")).status_code == 400  # bob is offline
        await wait_until(lambda: not registry.lookup("alice"))


@pytest.mark.anyio
async def test_contract_checks_on_the_custom_transport() -> None:
    await contract_checks.test_stream_transport_keeps_the_contract()


@pytest.mark.anyio
async def test_contract_checks_on_the_custom_backend() -> None:
    await contract_checks.test_broker_backend_keeps_the_contract()


def test_every_snippet_file_is_tested() -> None:
    """A new file in docs_src/ must get a test above."""
    tested = {
        module.__name__.rsplit(".", 1)[-1]
        for module in (
            connections,
            contract_checks,
            custom_backend,
            custom_transport,
            emitter,
            fastapi_app,
            fastapi_dependencies,
            groups,
            lifecycle,
            migration_after,
            migration_before,
            nats_cluster,
            operations,
            operations_metrics,  # tested in tests/ops/test_docs_operations.py
            overflow,
            presence,
            quickstart_core,
            redis_cluster,
            serializer,
            starlette_app,
            testing_app,
            threadsafe,
            websockets_app,
            websockets_handler,
        )
    }
    files = {path.stem for path in (ROOT / "docs_src").glob("[!_]*.py")}
    assert files == tested


def test_every_included_snippet_exists() -> None:
    """Each ``--8<--`` in docs/ names a docs_src file and, if given, a section of it."""
    include = re.compile(r'--8<-- "([^":]+)(?::([\w-]+))?"')
    found = 0
    for page in (ROOT / "docs").rglob("*.md"):
        for path, section in include.findall(page.read_text()):
            found += 1
            source = (ROOT / path).read_text()
            if section:
                assert f"# --8<-- [start:{section}]" in source, (page, path, section)
                assert f"# --8<-- [end:{section}]" in source, (page, path, section)
    assert found > 0


def test_security_close_code_table_matches_close_code() -> None:
    """The close-codes table of docs/security.md lists exactly the members of CloseCode."""
    page = (ROOT / "docs" / "security.md").read_text()
    rows = set(re.findall(r"^\| (\d{4}) \| `([A-Z_]+)`", page, flags=re.MULTILINE))
    assert rows == {(str(code.value), code.name) for code in CloseCode}


def test_griffe_extension_renders_roles_literal_blocks_and_simple_tables() -> None:
    """The build-time docstring rewriting (docs_src/_griffe_roles.py) on a real package."""
    import griffe
    from docs_src import _griffe_roles

    package = griffe.load("wsregistry", search_paths=[str(ROOT / "src")])
    assert isinstance(package, griffe.Module)
    _griffe_roles.SphinxRoles().on_package(pkg=package, loader=griffe.GriffeLoader())
    connect = package["Registry.connect"].docstring.value
    assert "[`disconnect`][wsregistry.registry.Registry.disconnect]" in connect
    assert ":meth:" not in connect
    transport = package["transport"].docstring.value
    assert "It needs two coroutines:\n" in transport
    rst = ["Intro:", "", "  ====  =====", "  a     b c", "  ====  =====", "  1     2"]
    rst += ["  ====  =====", "", "  after", "* next"]
    table = _griffe_roles._markdown_tables("\n".join(rst))
    assert "| a | b c |\n| --- | --- |\n| 1 | 2 |" in table
    assert "\nafter\n\n* next" in table
