"""The README's FastAPI snippet runs exactly as it appears there; its install line brings a
server that can serve WebSockets."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .helpers import TIMEOUT
from .servers import serve

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def load_snippet(tmp_path: Path) -> ModuleType:
    (snippet,) = code_blocks(section("With FastAPI"), "python")
    path = tmp_path / "readme_app.py"
    path.write_text(snippet, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("readme_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_app"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["readme_app"]
    return module


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_the_fastapi_snippet_runs_as_pasted(tmp_path: Path) -> None:
    module = load_snippet(tmp_path)

    async def recv(ws: Any) -> Any:
        with anyio.fail_after(TIMEOUT):
            return json.loads(await ws.recv())

    async with serve(module.app, registry=module.registry) as host:
        url = f"ws://{host}/ws"
        page = {"Origin": "http://localhost:8000"}  # a page on the origin the snippet allows
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"{url}?token=wrong", open_timeout=TIMEOUT)
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as refused:
            await connect(
                f"{url}?token=secret-alice",
                additional_headers={"Origin": "https://evil.example"},
                open_timeout=TIMEOUT,
            )
        assert refused.value.response.status_code == 403
        async with (
            connect(f"{url}?token=secret-alice", additional_headers=page) as alice,
            connect(f"{url}?token=secret-bob") as bob,  # a native client: no Origin
        ):
            registry = module.registry
            with anyio.fail_after(TIMEOUT):
                while len(registry.connections()) < 2:  # noqa: ASYNC110 - no event to wait on
                    await anyio.sleep(0.005)
            async with httpx.AsyncClient(base_url=f"http://{host}") as http:
                response = await http.post("/notify/alice")
            assert response.json() == {"queued_here": 1}
            assert await recv(alice) == {"type": "notice"}
            await bob.send("hi all")
            assert await recv(alice) == {"from": "bob", "text": "hi all"}


def optional_dependencies() -> dict[str, list[str]]:
    """``[project.optional-dependencies]`` of pyproject.toml (one line per extra there)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    start = text.index("[project.optional-dependencies]\n")
    end = text.index("\n[", start + 1)
    return {
        name: re.findall(r'"([^"]+)"', items)
        for name, items in re.findall(r"^([\w-]+) = \[(.*?)\]$", text[start:end], flags=re.M)
    }


def extras_of(requirements: list[str]) -> set[str]:
    return {match for line in requirements for match in re.findall(r"\[([^\]]+)\]", line)}


def test_the_install_line_brings_a_websocket_capable_server() -> None:
    install = [
        line
        for block in code_blocks(section("Get started"), "console")
        for line in block.splitlines()
        if line.startswith("pip install")
    ]
    assert install, "no pip install line in the README"
    extras_wanted = {e.strip() for part in extras_of(install) for e in part.split(",")}
    optional = optional_dependencies()
    requirements = [req for extra in extras_wanted for req in optional[extra]]
    # plain uvicorn has no WebSocket library: it answers every WebSocket with 404
    assert any(re.match(r"uvicorn\[[^\]]*standard", req) for req in requirements), requirements
    assert "fastapi" in extras_wanted
