"""The core stands alone: importing it loads no framework, server, broker client or trio."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = [
    "pytest",
    "starlette",
    "fastapi",
    "websockets",
    "redis",
    "uvicorn",
    "trio",
    "wsproto",
    "httpx",
]


@pytest.mark.parametrize(
    "modules",
    [
        ["wsregistry"],
        [
            "wsregistry",
            "wsregistry.testing",
            "wsregistry.contracts",
            "wsregistry.backends",
            "wsregistry.adapters",
        ],
    ],
)
def test_core_imports_no_optional_dependency(modules: list[str]) -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == []
