"""Adapters import their framework only in their own module, name the extra when
it is missing, and export a pinned set of public names."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

FRAMEWORKS = ("starlette", "fastapi", "websockets", "uvicorn", "wsproto")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_shared_adapter_package_loads_no_framework() -> None:
    result = run_python(
        f"""
        import sys
        import wsregistry.adapters
        loaded = [m for m in {FRAMEWORKS!r} if m in sys.modules]
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        ("starlette", "starlette", "starlette"),
        ("fastapi", "fastapi", "fastapi"),
        ("websockets", "websockets", "websockets"),
        ("uvicorn", "uvicorn", "uvicorn"),
    ],
)
def test_missing_extra_names_the_pip_install(module: str, blocked: str, extra: str) -> None:
    result = run_python(
        f"""
        import sys
        sys.modules[{blocked!r}] = None  # as if the extra were not installed
        try:
            import wsregistry.adapters.{module}
        except ImportError as exc:
            print(exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install 'wsregistry[{extra}]'" in result.stdout


EXPORTS = {
    "wsregistry.adapters": {
        "DEFAULT_MAX_MESSAGE_SIZE",
        "EndpointOptions",
        "Identity",
        "LimitPolicy",
        "Refusal",
        "RefusalMode",
        "Refuse",
    },
    "wsregistry.adapters.starlette": {
        "EndpointOptions",
        "Identity",
        "LimitPolicy",
        "RefusalMode",
        "Refuse",
        "RegistryEndpoint",
        "StarletteTransport",
    },
    "wsregistry.adapters.fastapi": {
        "STATE_KEY",
        "EndpointOptions",
        "Identity",
        "LimitPolicy",
        "RefusalMode",
        "Refuse",
        "RegistryDep",
        "RegistryEndpoint",
        "StarletteTransport",
        "get_registry",
        "registry_lifespan",
    },
    "wsregistry.adapters.websockets": {
        "EndpointOptions",
        "Identity",
        "LimitPolicy",
        "RefusalMode",
        "Refuse",
        "RegistryHandler",
        "RegistryServerConnection",
        "WebsocketsTransport",
        "serve",
    },
    "wsregistry.adapters.uvicorn": {"Server", "run"},
}


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_public_names_are_pinned(module: str) -> None:
    imported = __import__(module, fromlist=["__all__"])
    assert set(imported.__all__) == EXPORTS[module]
    for name in imported.__all__:
        assert getattr(imported, name) is not None


def test_transports_satisfy_the_transport_protocol() -> None:
    from wsregistry import SupportsSendNowait, Transport
    from wsregistry.adapters.starlette import StarletteTransport
    from wsregistry.adapters.websockets import WebsocketsTransport

    for transport in (StarletteTransport, WebsocketsTransport):
        assert callable(transport.send)
        assert callable(transport.close)
        assert callable(transport.abort)
    assert issubclass(WebsocketsTransport, SupportsSendNowait)
    assert issubclass(StarletteTransport, SupportsSendNowait)
    assert issubclass(StarletteTransport, Transport)
