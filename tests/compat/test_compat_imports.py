"""The drop-in module imports no framework until it is used, and pins its public names."""

from __future__ import annotations

import json
import subprocess
import sys

from wsregistry.compat import connection_manager

FRAMEWORKS = ["starlette", "fastapi", "websockets", "redis", "uvicorn"]


def test_importing_the_drop_in_loads_no_framework() -> None:
    code = (
        "import json, sys\n"
        "import wsregistry.compat.connection_manager\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(result.stdout) == []


def test_public_names() -> None:
    assert set(connection_manager.__all__) == {
        "MFA_DETAIL",
        "REDIS_NAMESPACE_ENV",
        "REDIS_URL_ENV",
        "REQUIRED_MESSAGES",
        "ConnectionManager",
        "get_websocket_manager",
        "logger",
        "notify_frontend",
    }
    for name in connection_manager.__all__:
        assert hasattr(connection_manager, name), name
