"""Every code sample of the documentation runs here (docs_src/, included with ``--8<--``)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from docs_src import (
    connections,
    custom_backend,
    custom_transport,
    groups,
    operations,
    overflow,
    presence,
    quickstart_core,
    serializer,
    testing_app,
    threadsafe,
)

from wsregistry import CloseCode

ROOT = Path(__file__).resolve().parent.parent


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


def test_every_snippet_file_is_tested() -> None:
    """A new file in docs_src/ must get a test above."""
    tested = {
        module.__name__.rsplit(".", 1)[-1]
        for module in (
            connections,
            custom_backend,
            custom_transport,
            groups,
            operations,
            overflow,
            presence,
            quickstart_core,
            serializer,
            testing_app,
            threadsafe,
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
