"""The handshake policy every adapter applies, free of any framework.

Pure bookkeeping: the adapters ask it whether an ``Origin`` is allowed, turn
what the authentication hook returned into an :class:`Identity` or a
:class:`Refusal`, count connections per key, and measure inbound messages.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .._types import check_group, check_key
from ..codes import CloseCode
from ..errors import WSRegistryError

if TYPE_CHECKING:
    from .. import Key
    from ..connection import Connection
    from ..registry import Registry

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "Identity",
    "LimitPolicy",
    "Refusal",
    "RefusalMode",
    "Refuse",
]

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
"""Default bound on one inbound message, in bytes (1 MiB, as in ``websockets``)."""

_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}
_NO_GROUPS: frozenset[str] = frozenset()  # shared by every Identity without groups
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})  # ... and without metadata


@dataclass(frozen=True)
class Identity:
    """Who a connection belongs to: what the authentication hook returns to admit it.

    Attributes:
        key: the registry key (usually the user id; ``str`` or ``int``).
        groups: groups the connection joins at once (any set; stored as a ``frozenset``).
        metadata: the application's data about the connection (copied into
            :attr:`Connection.metadata <wsregistry.Connection.metadata>`).
    """

    key: Key
    groups: AbstractSet[str] = frozenset()
    metadata: Mapping[str, Any] = field(default_factory=lambda: _NO_METADATA)

    def __post_init__(self) -> None:
        check_key(self.key)
        if isinstance(self.groups, str):
            raise TypeError("groups must be an iterable of group names, not a single str")
        groups = frozenset(check_group(g) for g in self.groups) if self.groups else _NO_GROUPS
        object.__setattr__(self, "groups", groups)
        if not isinstance(self.metadata, Mapping):
            raise TypeError(f"metadata must be a mapping, got {type(self.metadata).__name__}")


@dataclass(frozen=True)
class Refusal:
    """How a handshake is refused: an HTTP status before accept, or a close code after.

    Attributes:
        status: the HTTP status sent in strict mode (:attr:`RefusalMode.HTTP`).
        code: the WebSocket close code sent in browser-friendly mode
            (:attr:`RefusalMode.CLOSE`).
        reason: a short text for the response body or the close frame.
    """

    status: int
    code: int
    reason: str


class Refuse(WSRegistryError):
    """Raise it from an authentication hook to refuse the connection with a chosen answer.

    Returning ``None`` from the hook is the same as ``raise Refuse()``.

    Args:
        reason: a short text for the client (HTTP body or close reason; at
            most 123 bytes in UTF-8, the close-frame limit).
        status: the HTTP status in strict mode (default 403).
        code: the close code in browser-friendly mode (default 4401).

    Attributes:
        refusal: the :class:`Refusal` the adapter sends.
    """

    def __init__(
        self,
        reason: str = "authentication failed",
        *,
        status: int = 403,
        code: int = CloseCode.UNAUTHORIZED,
    ) -> None:
        if len(reason.encode("utf-8")) > 123:
            raise ValueError("reason must fit a close frame: at most 123 bytes in UTF-8")
        if not 400 <= status < 600:
            raise ValueError(f"status must be an HTTP error status (4xx/5xx), got {status}")
        if not (code in (1008, 1011, 1013) or 4000 <= code < 5000):
            raise ValueError(
                f"code must be 1008, 1011, 1013 or an application code 4000-4999, got {code}"
            )
        self.refusal = Refusal(status, code, reason)
        super().__init__(f"connection refused: {reason} (HTTP {status} / close {code})")


class RefusalMode(str, enum.Enum):
    """How an adapter refuses a handshake (authentication, ``Origin``, connection limit)."""

    HTTP = "http"
    """Strict (default): answer the handshake with an HTTP error (403, 429) and never
    accept. Browsers do not show the status to JavaScript (the socket just fails)."""
    CLOSE = "close"
    """Browser-friendly: accept, then close at once with a 44xx code the page can read
    (4401 authentication, 4403 ``Origin``, 4429 connection limit)."""


class LimitPolicy(str, enum.Enum):
    """What happens when a key already holds ``max_connections_per_key`` connections."""

    REJECT_NEW = "reject_new"
    """Refuse the new connection (HTTP 429 or close 4429). Default."""
    EVICT_OLDEST = "evict_oldest"
    """Admit the new connection, then close the key's oldest one with 4429
    ("replaced by a newer connection")."""


ORIGIN_REFUSAL = Refusal(403, CloseCode.FORBIDDEN, "origin not allowed")
LIMIT_REFUSAL = Refusal(429, CloseCode.TOO_MANY_CONNECTIONS, "too many connections")
EVICTED_REASON = "replaced by a newer connection"
TOO_BIG_REASON = "message too big"


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case without a default port; ``null`` stays ``null``.

    Raises:
        ValueError: ``origin`` is not an origin (has a path, query, user info, no host).
    """
    text = origin.strip()
    if text.lower() == "null":
        return "null"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not an origin: {origin!r}") from exc
    if (
        not parts.scheme
        or not parts.hostname
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(f"not an origin (expected scheme://host[:port]): {origin!r}")
    scheme = parts.scheme.lower()
    host = parts.hostname.encode("idna").decode("ascii").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is None or _DEFAULT_PORTS.get(scheme) == port:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class Policy:
    """The validated handshake options of one adapter endpoint (shared by its connections)."""

    __slots__ = (
        "allow_missing_origin",
        "limit_policy",
        "max_connections_per_key",
        "max_message_size",
        "origins",
        "pending",
        "refusal_mode",
    )

    def __init__(
        self,
        *,
        allowed_origins: Iterable[str] | None,
        allow_missing_origin: bool,
        max_connections_per_key: int | None,
        limit_policy: LimitPolicy | str,
        refusal: RefusalMode | str,
        max_message_size: int | None,
    ) -> None:
        if isinstance(allowed_origins, str):
            raise TypeError("allowed_origins must be an iterable of origins, not a single str")
        self.origins: frozenset[str] | None = (
            None
            if allowed_origins is None
            else frozenset(normalize_origin(origin) for origin in allowed_origins)
        )
        self.allow_missing_origin = bool(allow_missing_origin)
        self.max_connections_per_key = _positive_or_none(
            "max_connections_per_key", max_connections_per_key
        )
        self.limit_policy = _choice(LimitPolicy, "limit_policy", limit_policy)
        self.refusal_mode = _choice(RefusalMode, "refusal", refusal)
        self.max_message_size = _positive_or_none("max_message_size", max_message_size)
        self.pending: dict[Key, int] = {}

    def check_origin(self, origin: str | None) -> Refusal | None:
        """``None`` if ``origin`` (the header value, or ``None`` when absent) is allowed."""
        if self.origins is None:
            return None
        if origin is None:
            return None if self.allow_missing_origin else ORIGIN_REFUSAL
        try:
            normalized = normalize_origin(origin)
        except ValueError:
            return ORIGIN_REFUSAL
        return None if normalized in self.origins else ORIGIN_REFUSAL

    def check_limit(self, registry: Registry, key: Key) -> Refusal | None:
        """``None`` if one more connection of ``key`` may be admitted now."""
        limit = self.max_connections_per_key
        if limit is None or self.limit_policy is LimitPolicy.EVICT_OLDEST:
            return None
        held = len(registry.lookup(key)) + self.pending.get(key, 0)
        return LIMIT_REFUSAL if held >= limit else None

    @contextmanager
    def reserve(self, key: Key) -> Iterator[None]:
        """Count a connection of ``key`` as held while it is being accepted and registered."""
        pending = self.pending
        pending[key] = pending.get(key, 0) + 1
        try:
            yield
        finally:
            left = pending[key] - 1
            if left:
                pending[key] = left
            else:
                del pending[key]

    def to_evict(self, registry: Registry, newest: Connection) -> list[Connection]:
        """The oldest connections of ``newest.key`` beyond the limit (evict-oldest policy).

        Only connections registered **before** ``newest`` count: when two
        connections of a key register at nearly the same time, the older one
        never evicts the newer one (which would close both).
        """
        limit = self.max_connections_per_key
        if limit is None or self.limit_policy is not LimitPolicy.EVICT_OLDEST:
            return []
        older: list[Connection] = []
        for conn in registry.lookup(newest.key):  # oldest first
            if conn is newest:
                break
            older.append(conn)
        else:
            return []  # newest is gone already: it evicts nobody
        excess = len(older) + 1 - limit
        return older[:excess] if excess > 0 else []

    def too_big(self, data: str | bytes) -> bool:
        """Whether an inbound message exceeds ``max_message_size`` (UTF-8 bytes for text)."""
        limit = self.max_message_size
        if limit is None:
            return False
        if isinstance(data, bytes):
            return len(data) > limit
        # A str of n code points takes n to 4n bytes: encode only when it matters.
        if len(data) > limit:
            return True
        return len(data) * 4 > limit and len(data.encode("utf-8", "surrogatepass")) > limit


def identify(result: object) -> Identity | Refusal:
    """Turn an authentication hook's return value into an identity or a refusal."""
    if result is None:
        return Refuse().refusal
    if isinstance(result, Identity):
        return result
    raise TypeError(
        f"the authenticate hook must return an Identity or None, got {type(result).__name__}"
    )


def check_heartbeat(interval: float | None, timeout: float | None) -> None:
    """Validate the app-level heartbeat options."""
    for name, value in (("heartbeat_interval", interval), ("heartbeat_timeout", timeout)):
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number of seconds or None")
        if math.isnan(value) or value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if timeout is not None and interval is None:
        raise ValueError("heartbeat_timeout needs heartbeat_interval")


EnumT = TypeVar("EnumT", LimitPolicy, RefusalMode)


def _choice(enum_type: type[EnumT], name: str, value: object) -> EnumT:
    try:
        return enum_type(value)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in enum_type)
        raise ValueError(f"{name} must be one of {choices}, got {value!r}") from None


def _positive_or_none(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value
