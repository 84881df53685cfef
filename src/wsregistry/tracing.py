"""OpenTelemetry spans around connect, send/broadcast and backend publish.

Install with ``pip install 'wsregistry[otel]'``. :func:`instrument` wraps one
registry's calls (and its backend's ``publish``) on that instance; nothing
changes for other registries, and :meth:`Instrumentation.uninstrument` puts
the plain methods back. Spans are made with the tracer provider given, or the
global one; with no SDK configured OpenTelemetry makes them no-ops.

Spans (all ``INTERNAL`` except the publish, a ``PRODUCER``):

* ``wsregistry.connect``: the registration, until the connection is reachable.
* ``wsregistry.send`` / ``wsregistry.broadcast`` / ``wsregistry.send_to_connection``:
  serialisation, the local fan-out and, as a child span, ``wsregistry.publish``
  (the hand-off to the backend, when the backend reaches other nodes).

Attributes: ``wsregistry.node_id``, ``wsregistry.backend``,
``wsregistry.delivered`` (local connections reached), ``wsregistry.kind``
(``key``/``broadcast``/``group``/``connection`` on publish spans). Keys and
group names identify users and rooms, so they are recorded
(``wsregistry.key``, ``wsregistry.group``) only with ``record_keys=True`` /
``record_groups=True``.

A call awaited from another event loop or thread is handed to the registry's
loop (see :class:`~wsregistry.Registry`); it then shows as a span in the
caller's trace and a second, separate one on the registry's loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise ImportError(
        "wsregistry.tracing needs OpenTelemetry: pip install 'wsregistry[otel]'"
    ) from exc

from . import Registry  # the public name: an integration uses the public API
from .envelope import Envelope, EnvelopeKind

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from .connection import Connection
    from .transport import Transport

__all__ = ["Instrumentation", "instrument"]

_WRAPPED = ("connect", "send", "broadcast", "send_to_connection")

_KINDS = {
    EnvelopeKind.KEY: "key",
    EnvelopeKind.BROADCAST: "broadcast",
    EnvelopeKind.GROUP: "group",
    EnvelopeKind.CONNECTION: "connection",
}


class Instrumentation:
    """What :func:`instrument` did to one registry; undo it with :meth:`uninstrument`.

    Create it with :func:`instrument` (which checks its arguments).

    Attributes:
        registry: the instrumented registry.
        record_keys: whether spans carry keys.
        record_groups: whether spans carry group names.
    """

    def __init__(
        self,
        registry: Registry,
        tracer: trace.Tracer,
        *,
        record_keys: bool,
        record_groups: bool,
    ) -> None:
        self.registry = registry
        self.record_keys = record_keys
        self.record_groups = record_groups
        self._tracer = tracer
        self._backend = registry.backend
        self._base = {
            "wsregistry.node_id": registry.node_id,
            "wsregistry.backend": registry.backend.health().name,
        }
        self._install()

    def _install(self) -> None:
        registry = self.registry
        plain = {name: getattr(registry, name) for name in _WRAPPED}
        tracer = self._tracer
        base = self._base

        async def connect(
            transport: Transport,
            *,
            key: Any,
            groups: Iterable[str] = (),
            metadata: Mapping[str, Any] | None = None,
        ) -> Connection:
            groups = tuple(groups) if not isinstance(groups, str) else groups
            attributes: dict[str, Any] = dict(base)
            if self.record_keys:
                attributes["wsregistry.key"] = str(key)
            if self.record_groups and not isinstance(groups, str):
                attributes["wsregistry.groups"] = list(groups)
            with tracer.start_as_current_span("wsregistry.connect", attributes=attributes) as span:
                conn: Connection = await plain["connect"](
                    transport, key=key, groups=groups, metadata=metadata
                )
                span.set_attribute("wsregistry.connection_id", conn.id)
                return conn

        async def send(key: Any, message: Any, *, require: bool = False) -> int:
            attributes: dict[str, Any] = {**base, "wsregistry.require": require}
            if self.record_keys:
                attributes["wsregistry.key"] = str(key)
            with tracer.start_as_current_span("wsregistry.send", attributes=attributes) as span:
                delivered: int = await plain["send"](key, message, require=require)
                span.set_attribute("wsregistry.delivered", delivered)
                return delivered

        async def broadcast(message: Any, *, group: str | None = None, exclude: Any = None) -> int:
            attributes: dict[str, Any] = dict(base)
            if group is not None and self.record_groups:
                attributes["wsregistry.group"] = group
            name = "wsregistry.broadcast"
            with tracer.start_as_current_span(name, attributes=attributes) as span:
                delivered: int = await plain["broadcast"](message, group=group, exclude=exclude)
                span.set_attribute("wsregistry.delivered", delivered)
                return delivered

        async def send_to_connection(connection_id: str, message: Any) -> int:
            attributes = {**base, "wsregistry.connection_id": connection_id}
            name = "wsregistry.send_to_connection"
            with tracer.start_as_current_span(name, attributes=attributes) as span:
                delivered: int = await plain["send_to_connection"](connection_id, message)
                span.set_attribute("wsregistry.delivered", delivered)
                return delivered

        backend = self._backend
        plain_publish = backend.publish

        async def publish(envelope: Envelope) -> None:
            attributes: dict[str, Any] = {**base, "wsregistry.kind": _KINDS[envelope.kind]}
            if envelope.kind is EnvelopeKind.KEY and self.record_keys:
                attributes["wsregistry.key"] = str(envelope.target)
            elif envelope.kind is EnvelopeKind.GROUP and self.record_groups:
                attributes["wsregistry.group"] = str(envelope.target)
            with tracer.start_as_current_span(
                "wsregistry.publish",
                kind=SpanKind.PRODUCER,
                attributes=attributes,
                record_exception=True,
                set_status_on_exception=True,
            ):
                await plain_publish(envelope)

        for name, wrapper in (
            ("connect", connect),
            ("send", send),
            ("broadcast", broadcast),
            ("send_to_connection", send_to_connection),
        ):
            setattr(registry, name, wrapper)
        backend.publish = publish  # type: ignore[method-assign]

    def uninstrument(self) -> None:
        """Put the plain methods back. Idempotent."""
        for name in _WRAPPED:
            self.registry.__dict__.pop(name, None)
        self._backend.__dict__.pop("publish", None)


def instrument(
    registry: Registry,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    record_keys: bool = False,
    record_groups: bool = False,
) -> Instrumentation:
    """Trace ``registry``'s connect, send, broadcast and backend publish.

    Call it once per registry, before serving (it is not thread-safe). Non-blocking.

    Args:
        registry: the registry to trace.
        tracer_provider: where spans go (default: OpenTelemetry's global provider).
        record_keys: put keys on spans (``wsregistry.key``). Off by default: keys
            usually identify users.
        record_groups: put group names on spans (``wsregistry.group(s)``). Off by default.

    Returns:
        The :class:`Instrumentation`, to undo it.

    Raises:
        TypeError: ``registry`` is not a :class:`~wsregistry.Registry`.
        ValueError: the registry is already instrumented.
    """
    if not isinstance(registry, Registry):
        raise TypeError(f"registry must be a wsregistry Registry, got {type(registry).__name__}")
    if "send" in registry.__dict__:
        raise ValueError("this registry is already instrumented")
    tracer = trace.get_tracer("wsregistry", tracer_provider=tracer_provider)
    return Instrumentation(
        registry, tracer, record_keys=bool(record_keys), record_groups=bool(record_groups)
    )
