"""Pin the public names: removing or renaming one is a deliberate, recorded change."""

from __future__ import annotations

import wsregistry
import wsregistry.backends
import wsregistry.contracts
import wsregistry.errors
import wsregistry.testing

PUBLIC = {
    "Backend",
    "BackendHealth",
    "BackendUnavailable",
    "CloseCode",
    "Connection",
    "ConnectionClosed",
    "ConnectionState",
    "Envelope",
    "EnvelopeKind",
    "Key",
    "LocalNode",
    "MemoryBackend",
    "MemoryHub",
    "NotConnected",
    "OverflowPolicy",
    "Payload",
    "QueueLimits",
    "Registry",
    "RegistryAlreadyRunning",
    "RegistryClosed",
    "RegistryNotStarted",
    "RegistryStats",
    "SerializationError",
    "Serializer",
    "SupportsSendNowait",
    "Transport",
    "WSRegistryError",
    "__version__",
    "json_serializer",
}

ERRORS = {
    "BackendUnavailable",
    "ConnectionClosed",
    "NotConnected",
    "RegistryAlreadyRunning",
    "RegistryClosed",
    "RegistryNotStarted",
    "SerializationError",
    "WSRegistryError",
}


def test_top_level_names() -> None:
    assert set(wsregistry.__all__) == PUBLIC
    assert len(wsregistry.__all__) == len(PUBLIC)  # no duplicates
    for name in wsregistry.__all__:
        assert hasattr(wsregistry, name), name


def test_error_names_and_tree() -> None:
    assert set(wsregistry.errors.__all__) == ERRORS
    for name in ERRORS:
        error = getattr(wsregistry.errors, name)
        assert getattr(wsregistry, name) is error  # re-exported, same object
        assert issubclass(error, wsregistry.errors.WSRegistryError)
    assert issubclass(wsregistry.SerializationError, TypeError)
    assert issubclass(wsregistry.NotConnected, LookupError)
    assert issubclass(wsregistry.RegistryClosed, RuntimeError)
    assert issubclass(wsregistry.RegistryNotStarted, wsregistry.RegistryClosed)
    assert issubclass(wsregistry.BackendUnavailable, ConnectionError)


def test_subpackage_names() -> None:
    assert set(wsregistry.backends.__all__) == {
        "Backend",
        "Envelope",
        "EnvelopeKind",
        "LocalNode",
        "MemoryBackend",
        "MemoryHub",
    }
    assert set(wsregistry.testing.__all__) == {
        "FailingTransport",
        "RecordingTransport",
        "StallingTransport",
        "TransportBroken",
    }
    assert set(wsregistry.contracts.__all__) == {
        "HOSTILE_KEYS",
        "ConnectedTransport",
        "MakeCluster",
        "MakeTransport",
        "check_backend",
        "check_transport",
    }
    for name in wsregistry.contracts.__all__:
        assert name not in wsregistry.__all__  # the checkers live in their own module


def test_version_is_a_string() -> None:
    assert isinstance(wsregistry.__version__, str)
    assert wsregistry.__version__.count(".") >= 2
