"""The framework-free handshake policy: origins, identities, refusals, limits, sizes."""

from __future__ import annotations

from typing import Any

import pytest

from wsregistry import CloseCode, Registry, WSRegistryError
from wsregistry.adapters import Identity, LimitPolicy, Refusal, RefusalMode, Refuse
from wsregistry.adapters._handshake import Policy, check_heartbeat, identify, normalize_origin


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("HTTPS://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80/", "http://app.example.com"),
        ("http://app.example.com:8080", "http://app.example.com:8080"),
        ("https://app.example.com:80", "https://app.example.com:80"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("https://bücher.example", "https://xn--bcher-kva.example"),
        ("null", "null"),
        (" https://app.example ", "https://app.example"),
    ],
)
def test_origins_are_normalised(origin: str, expected: str) -> None:
    assert normalize_origin(origin) == expected


@pytest.mark.parametrize(
    "origin",
    [
        "app.example.com",
        "https://app.example.com/path",
        "https://app.example.com?q=1",
        "https://user@app.example.com",
        "https://app.example.com:99999",
        "https://",
    ],
)
def test_malformed_origins_are_rejected(origin: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        normalize_origin(origin)


def make_policy(**options: Any) -> Policy:
    defaults: dict[str, Any] = {
        "allowed_origins": None,
        "allow_missing_origin": True,
        "max_connections_per_key": None,
        "limit_policy": "reject_new",
        "refusal": "http",
        "max_message_size": None,
    }
    return Policy(**{**defaults, **options})


def test_origin_allow_list_is_an_exact_match_after_normalisation() -> None:
    policy = make_policy(allowed_origins=["https://app.example.com"])
    assert policy.check_origin("https://APP.example.com:443") is None
    assert policy.check_origin(None) is None
    refused = policy.check_origin("https://app.example.com.evil.test")
    assert refused == Refusal(403, CloseCode.FORBIDDEN, "origin not allowed")
    assert policy.check_origin("http://app.example.com") is not None  # scheme matters
    assert policy.check_origin("null") is not None
    assert policy.check_origin("not an origin") is not None
    strict = make_policy(allowed_origins=["https://app.example.com"], allow_missing_origin=False)
    assert strict.check_origin(None) is not None
    assert make_policy().check_origin("https://anything.test") is None  # no list: no check


def test_bad_options_raise_type_and_value_errors() -> None:
    with pytest.raises(TypeError, match="not a single str"):
        make_policy(allowed_origins="https://app.example.com")
    with pytest.raises(ValueError, match="origin"):
        make_policy(allowed_origins=["https://app.example.com/chat"])
    with pytest.raises(ValueError, match="max_connections_per_key"):
        make_policy(max_connections_per_key=0)
    with pytest.raises(TypeError, match="max_message_size"):
        make_policy(max_message_size=1.5)
    with pytest.raises(ValueError, match="reject_new"):
        make_policy(limit_policy="reject_oldest")
    with pytest.raises(ValueError, match="browser"):
        make_policy(refusal="browser")
    with pytest.raises(ValueError, match="needs heartbeat_interval"):
        check_heartbeat(None, 1.0)
    with pytest.raises(ValueError, match="> 0"):
        check_heartbeat(0, None)
    with pytest.raises(TypeError, match="seconds"):
        check_heartbeat("1", None)  # type: ignore[arg-type]


def test_enums_accept_their_string_values() -> None:
    assert make_policy(limit_policy="evict_oldest").limit_policy is LimitPolicy.EVICT_OLDEST
    assert make_policy(refusal="close").refusal_mode is RefusalMode.CLOSE


def test_identity_validates_and_freezes_its_fields() -> None:
    identity = Identity(key=42, groups={"a", "b"}, metadata={"x": 1})
    assert identity.groups == frozenset({"a", "b"})
    assert Identity(key="u").metadata == {}
    with pytest.raises(TypeError, match="key"):
        Identity(key=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="single str"):
        Identity(key="u", groups="admins")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        Identity(key="u", groups={""})
    with pytest.raises(TypeError, match="mapping"):
        Identity(key="u", metadata=[1])  # type: ignore[arg-type]


def test_refuse_carries_a_validated_refusal() -> None:
    exc = Refuse("token expired", status=401, code=4001)
    assert isinstance(exc, WSRegistryError)
    assert exc.refusal == Refusal(401, 4001, "token expired")
    assert Refuse().refusal == Refusal(403, CloseCode.UNAUTHORIZED, "authentication failed")
    with pytest.raises(ValueError, match="status"):
        Refuse(status=200)
    with pytest.raises(ValueError, match="code"):
        Refuse(code=1000)
    with pytest.raises(ValueError, match="123 bytes"):
        Refuse("é" * 62)


def test_identify_maps_the_hook_result() -> None:
    assert identify(None) == Refuse().refusal
    identity = Identity(key="u")
    assert identify(identity) is identity
    with pytest.raises(TypeError, match="Identity or None"):
        identify("user-1")


def test_inbound_size_counts_utf8_bytes() -> None:
    policy = make_policy(max_message_size=10)
    assert not policy.too_big(b"x" * 10)
    assert policy.too_big(b"x" * 11)
    assert not policy.too_big("x" * 10)
    assert policy.too_big("x" * 11)
    assert not policy.too_big("é" * 5)  # 10 bytes
    assert policy.too_big("é" * 6)  # 12 bytes, 6 code points
    assert not make_policy().too_big(b"x" * 10_000_000)


@pytest.mark.anyio
async def test_limit_counts_registered_and_pending_connections() -> None:
    from wsregistry.testing import RecordingTransport

    policy = make_policy(max_connections_per_key=2)
    async with Registry() as registry:
        assert policy.check_limit(registry, "k") is None
        await registry.connect(RecordingTransport(), key="k")
        with policy.reserve("k"):
            refused = policy.check_limit(registry, "k")
            assert refused is not None
            assert (refused.status, refused.code) == (429, CloseCode.TOO_MANY_CONNECTIONS)
            assert policy.check_limit(registry, "other") is None
        assert policy.pending == {}
        assert policy.check_limit(registry, "k") is None

        evict = make_policy(max_connections_per_key=2, limit_policy="evict_oldest")
        conns = [await registry.connect(RecordingTransport(), key="e") for _ in range(4)]
        assert evict.check_limit(registry, "e") is None  # evicting never refuses
        assert evict.to_evict(registry, conns[-1]) == conns[:2]
        assert policy.to_evict(registry, conns[-1]) == []


@pytest.mark.anyio
async def test_evict_oldest_never_evicts_a_newer_connection() -> None:
    from wsregistry.testing import RecordingTransport

    evict = make_policy(max_connections_per_key=1, limit_policy="evict_oldest")
    async with Registry() as registry:
        first = await registry.connect(RecordingTransport(), key="k")
        second = await registry.connect(RecordingTransport(), key="k")
        assert evict.to_evict(registry, first) == []  # first runs its check late: evicts nobody
        assert evict.to_evict(registry, second) == [first]


@pytest.mark.anyio
async def test_one_options_object_configures_every_endpoint() -> None:
    from wsregistry.adapters import EndpointOptions
    from wsregistry.adapters.starlette import RegistryEndpoint
    from wsregistry.adapters.websockets import RegistryHandler

    async def authenticate(socket: object) -> Identity | None:
        return None

    options: EndpointOptions = {
        "allowed_origins": ["https://app.example.com"],
        "max_connections_per_key": 2,
        "limit_policy": "evict_oldest",
        "refusal": "close",
    }
    registry = Registry()
    for endpoint in (
        RegistryEndpoint(registry, authenticate=authenticate, **options),
        RegistryHandler(registry, authenticate=authenticate, **options),
    ):
        assert endpoint.refusal_mode is RefusalMode.CLOSE
    with pytest.raises(TypeError, match="unexpected endpoint option"):
        RegistryEndpoint(registry, authenticate=authenticate, max_conections_per_key=2)  # type: ignore[call-arg]
