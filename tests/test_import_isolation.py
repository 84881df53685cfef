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
    "nats",
    "uvicorn",
    "trio",
    "wsproto",
    "httpx",
    "prometheus_client",
    "opentelemetry",
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
            "wsregistry.health",
            "wsregistry.observer",
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


@pytest.mark.parametrize(("module", "blocked", "extra"), [("nats", "nats", "nats")])
def test_a_missing_backend_extra_names_the_pip_install(
    module: str, blocked: str, extra: str
) -> None:
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None  # as if the extra were not installed\n"
        "try:\n"
        f"    import wsregistry.backends.{module}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert f"pip install 'wsregistry[{extra}]'" in result.stdout


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [("prometheus", "prometheus_client", "prometheus"), ("tracing", "opentelemetry", "otel")],
)
def test_a_missing_operations_extra_names_the_pip_install(
    module: str, blocked: str, extra: str
) -> None:
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None  # as if the extra were not installed\n"
        "try:\n"
        f"    import wsregistry.{module}\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert f"pip install 'wsregistry[{extra}]'" in result.stdout
