"""Prometheus metrics for one or more registries: a collector and a ``/metrics`` endpoint.

Install with ``pip install 'wsregistry[prometheus]'``. A
:class:`RegistryCollector` reads :meth:`Registry.stats()
<wsregistry.Registry.stats>` at scrape time (nothing runs between scrapes) and
attaches itself as the registry's :class:`~wsregistry.observer.Observer` to add
what the counters do not hold: refusals by reason and the histograms of fan-out
duration and of the delay from a call to the transport write. Every metric
carries a ``registry`` label naming the registry. Counters restart at zero with
each run of a registry (``async with``); Prometheus treats that as a reset.

See *Operations: Prometheus* in the documentation for the metric list, a scrape
configuration, alert rules and several uvicorn workers.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, start_http_server
    from prometheus_client import registry as prometheus_registries
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.exposition import CONTENT_TYPE_LATEST
except ImportError as exc:  # pragma: no cover - exercised by the import-isolation test
    raise ImportError(
        "wsregistry.prometheus needs prometheus_client: pip install 'wsregistry[prometheus]'"
    ) from exc

from . import Registry  # the public name: an integration uses the public API
from .observer import REFUSAL_REASONS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "FANOUT_BUCKETS",
    "WRITE_DELAY_BUCKETS",
    "MetricsEndpoint",
    "MetricsServer",
    "RegistryCollector",
    "start_metrics_server",
]

FANOUT_BUCKETS: tuple[float, ...] = (
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
)  # fmt: skip
"""Default bucket bounds (seconds) of ``wsregistry_fanout_duration_seconds``."""

WRITE_DELAY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
"""Default bucket bounds (seconds) of ``wsregistry_send_to_write_seconds``."""


class _Histogram:
    """Bucket counts kept in plain lists: one ``bisect`` per observation, no lock."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = _check_buckets(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += times
        self.sum += value * times

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        return out


class _Observer:
    """What one registry reports between scrapes (an :class:`~wsregistry.observer.Observer`)."""

    __slots__ = ("fanout", "refusals", "times_queued_frames", "write_delay")

    def __init__(
        self,
        fanout_buckets: Sequence[float],
        write_buckets: Sequence[float],
        times_queued_frames: bool,
    ) -> None:
        self.times_queued_frames = times_queued_frames
        self.fanout = _Histogram(fanout_buckets)
        self.write_delay = _Histogram(write_buckets)
        self.refusals = dict.fromkeys(REFUSAL_REASONS, 0)

    def fanned_out(self, seconds: float, targets: int) -> None:
        self.fanout.observe(seconds)

    def written(self, seconds: float, frames: int) -> None:
        histogram = self.write_delay  # inlined observe(): called once per frame written
        histogram.counts[bisect_left(histogram.bounds, seconds)] += frames
        histogram.sum += seconds * frames

    def refused(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1


class RegistryCollector(prometheus_registries.Collector):
    """Exposes the state of one or more registries to Prometheus.

    Creating it attaches an observer to each registry (replacing none: a
    registry that already has another observer is refused) and, unless
    ``prometheus_registry=None``, registers the collector with
    ``prometheus_client``'s default registry. Scrapes never block the event
    loop: they read counters. Non-blocking.

    Args:
        registries: a :class:`~wsregistry.Registry` (labelled ``registry="default"``)
            or a mapping of label value to registry.
        prometheus_registry: where to register (default: ``prometheus_client.REGISTRY``;
            ``None``: do not register, call ``register`` yourself).
        fanout_buckets: bucket bounds of the fan-out duration histogram, seconds.
        write_buckets: bucket bounds of the send-to-write delay histogram, seconds.
        time_queued_frames: also record the exact delay of every frame that
            waits in a queue (a slow peer, a burst); it costs about a
            microsecond of CPU per such frame, too much to be on by default.
            By default (``False``) the histogram records the frames written
            directly inside the call (the fast path real adapters take while
            the socket has room); slow peers show in the queue gauges, the
            writer-task gauge and the overflow counters.

    Raises:
        TypeError: ``registries`` holds something other than registries.
        ValueError: a registry already has an observer; the buckets are not
            increasing positive numbers.
    """

    def __init__(
        self,
        registries: Registry | Mapping[str, Registry],
        *,
        prometheus_registry: CollectorRegistry | None = REGISTRY,
        fanout_buckets: Sequence[float] = FANOUT_BUCKETS,
        write_buckets: Sequence[float] = WRITE_DELAY_BUCKETS,
        time_queued_frames: bool = False,
    ) -> None:
        named = {"default": registries} if isinstance(registries, Registry) else dict(registries)
        for name, registry in named.items():
            if not isinstance(registry, Registry):
                raise TypeError(
                    f"registries must be a Registry or a mapping of names to registries, "
                    f"got {type(registry).__name__} for {name!r}"
                )
            if registry.observer is not None:
                raise ValueError(f"registry {name!r} already has an observer")
        self._registries: list[tuple[str, Registry, _Observer]] = []
        for name, registry in named.items():
            observer = _Observer(fanout_buckets, write_buckets, bool(time_queued_frames))
            registry.observer = observer
            self._registries.append((name, registry, observer))
        if prometheus_registry is not None:
            prometheus_registry.register(self)

    def detach(self) -> None:
        """Stop observing the registries (their counters stay exported). Idempotent."""
        for _, registry, observer in self._registries:
            if registry.observer is observer:
                registry.observer = None

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (``prometheus_client`` protocol)."""
        return self._families()

    def collect(self) -> Iterable[Metric]:
        """The metric families with one sample set per registry (at scrape time)."""
        families = self._families()
        for name, registry, observer in self._registries:
            _fill(families, name, registry, observer)
        return families

    @staticmethod
    def _families() -> list[Metric]:
        return list(_empty_families().values())


def _empty_families() -> dict[str, Any]:
    r = ["registry"]
    return {
        "running": GaugeMetricFamily(
            "wsregistry_running", "1 if the registry is running, else 0.", labels=r
        ),
        "connections": GaugeMetricFamily(
            "wsregistry_connections", "Live connections in this process.", labels=r
        ),
        "keys": GaugeMetricFamily(
            "wsregistry_keys", "Distinct keys with a live connection in this process.", labels=r
        ),
        "groups": GaugeMetricFamily(
            "wsregistry_groups", "Groups with a member in this process.", labels=r
        ),
        "queued": GaugeMetricFamily(
            "wsregistry_queued_messages", "Messages waiting in outbound queues.", labels=r
        ),
        "queued_bytes": GaugeMetricFamily(
            "wsregistry_queued_bytes",
            "Payload bytes (UTF-8 for text) waiting in outbound queues.",
            labels=r,
        ),
        "writer_tasks": GaugeMetricFamily(
            "wsregistry_writer_tasks",
            "Writer tasks running (peers applying back-pressure).",
            labels=r,
        ),
        "sent": CounterMetricFamily(
            "wsregistry_messages_sent", "Messages handed to transports.", labels=r
        ),
        "dropped": CounterMetricFamily(
            "wsregistry_messages_dropped",
            "Messages discarded: by the overflow policy (reason=overflow) or because their "
            "connection closed before they were written (reason=closed).",
            labels=[*r, "reason"],
        ),
        "overflows": CounterMetricFamily(
            "wsregistry_queue_overflows",
            "Messages that did not fit a connection's outbound queue, by the policy applied.",
            labels=[*r, "policy"],
        ),
        "slow_consumer_closes": CounterMetricFamily(
            "wsregistry_slow_consumer_closes",
            "Connections closed with 1013 because their outbound queue overflowed.",
            labels=r,
        ),
        "send_errors": CounterMetricFamily(
            "wsregistry_send_errors",
            "Connections unregistered because their transport failed.",
            labels=r,
        ),
        "connects": CounterMetricFamily("wsregistry_connects", "Connections registered.", labels=r),
        "disconnects": CounterMetricFamily(
            "wsregistry_disconnects", "Connections unregistered, for any reason.", labels=r
        ),
        "refusals": CounterMetricFamily(
            "wsregistry_refusals",
            "WebSockets refused by an adapter (auth, origin, limit, unavailable) or closed "
            "for an inbound message over the size limit (size).",
            labels=[*r, "reason"],
        ),
        "backend_up": GaugeMetricFamily(
            "wsregistry_backend_up",
            "1 if the backend reaches its broker (always 1 in memory), else 0.",
            labels=[*r, "backend"],
        ),
        "backend_errors": CounterMetricFamily(
            "wsregistry_backend_errors",
            "Backend failures the registry saw: failed publishes, hooks that raised, "
            "presence questions the backend could not answer.",
            labels=r,
        ),
        "backend_reconnects": CounterMetricFamily(
            "wsregistry_backend_reconnects",
            "Times the backend re-established its broker link.",
            labels=[*r, "backend"],
        ),
        "publish_failures": CounterMetricFamily(
            "wsregistry_backend_publish_failures",
            "Publishes the backend could not hand to its broker (backends that report it).",
            labels=[*r, "backend"],
        ),
        "fanout": HistogramMetricFamily(
            "wsregistry_fanout_duration_seconds",
            "Time to hand one send or broadcast to its local targets.",
            labels=r,
        ),
        "write_delay": HistogramMetricFamily(
            "wsregistry_send_to_write_seconds",
            "Time from a send/broadcast call to the transport write of each frame.",
            labels=r,
        ),
    }


def _fill(families: list[Metric], name: str, registry: Registry, observer: _Observer) -> None:
    by_name = {family.name: family for family in families}

    def add(metric: str, value: float, *labels: str) -> None:
        by_name[metric].add_metric([name, *labels], value)  # type: ignore[attr-defined]

    stats = registry.stats()
    backend = stats.backend
    add("wsregistry_running", 1 if registry.running else 0)
    add("wsregistry_connections", stats.connections)
    add("wsregistry_keys", stats.keys)
    add("wsregistry_groups", stats.groups)
    add("wsregistry_queued_messages", stats.queued)
    add("wsregistry_queued_bytes", stats.queued_bytes)
    add("wsregistry_writer_tasks", stats.writer_tasks)
    add("wsregistry_messages_sent", stats.sent)
    add("wsregistry_messages_dropped", stats.dropped - stats.dropped_closed, "overflow")
    add("wsregistry_messages_dropped", stats.dropped_closed, "closed")
    add("wsregistry_queue_overflows", stats.overflows, registry.limits.overflow.value)
    add("wsregistry_slow_consumer_closes", stats.slow_consumer_closes)
    add("wsregistry_send_errors", stats.send_errors)
    add("wsregistry_connects", stats.connects)
    add("wsregistry_disconnects", stats.disconnects)
    for reason, count in tuple(observer.refusals.items()):  # a scrape may run in a thread
        add("wsregistry_refusals", count, reason)
    add("wsregistry_backend_up", 1 if backend.connected else 0, backend.name)
    add("wsregistry_backend_errors", stats.backend_errors)
    add("wsregistry_backend_reconnects", backend.reconnects, backend.name)
    failures = backend.detail.get("publish_failures")
    if isinstance(failures, int):
        add("wsregistry_backend_publish_failures", failures, backend.name)
    for metric, histogram in (
        ("wsregistry_fanout_duration_seconds", observer.fanout),
        ("wsregistry_send_to_write_seconds", observer.write_delay),
    ):
        by_name[metric].add_metric(  # type: ignore[attr-defined]
            [name], histogram.buckets(), histogram.sum
        )


class MetricsEndpoint:
    """An ASGI app answering ``GET`` with the Prometheus text format.

    Mount it in one line: ``Route("/metrics", MetricsEndpoint())`` in
    Starlette, ``app.add_route("/metrics", MetricsEndpoint())`` in FastAPI, or
    any ASGI router. It renders in the event loop (collecting reads counters
    only).

    Args:
        prometheus_registry: what to expose (default: ``prometheus_client.REGISTRY``).
    """

    def __init__(self, prometheus_registry: CollectorRegistry = REGISTRY) -> None:
        self.prometheus_registry = prometheus_registry

    async def __call__(
        self,
        scope: Mapping[str, Any],
        receive: Callable[[], Awaitable[Mapping[str, Any]]],
        send: Callable[[Mapping[str, Any]], Awaitable[None]],
    ) -> None:
        """Serve one HTTP request (ASGI)."""
        if scope["type"] != "http":
            raise ValueError(f"MetricsEndpoint serves HTTP, got a {scope['type']!r} scope")
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n", "text/plain; charset=utf-8")
            return
        body = generate_latest(self.prometheus_registry)
        await _respond(send, 200, body, CONTENT_TYPE_LATEST, head=scope.get("method") == "HEAD")


async def _respond(
    send: Callable[[Mapping[str, Any]], Awaitable[None]],
    status: int,
    body: bytes,
    content_type: str,
    *,
    head: bool = False,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


class MetricsServer:
    """A ``/metrics`` HTTP server on its own port (see :func:`start_metrics_server`).

    Attributes:
        port: the port it listens on.
    """

    def __init__(self, port: int, server: Any, thread: Any) -> None:
        self.port = port
        self._server = server
        self._thread = thread

    def close(self) -> None:
        """Stop serving and release the port. Blocks until its thread ends. Idempotent."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None


def start_metrics_server(
    ports: int | Iterable[int],
    *,
    addr: str = "0.0.0.0",  # noqa: S104 - a metrics port is meant to be scraped
    prometheus_registry: CollectorRegistry = REGISTRY,
) -> MetricsServer:
    """Serve the metrics on their own port, from a daemon thread; one port per worker.

    With several uvicorn workers each process has its own registries, so each
    must be scraped on its own: give every worker the same range of ports and
    each takes the first free one (list the whole range in the scrape config).
    Blocks only while binding. Every path answers with the metrics.

    Args:
        ports: a port, or the ports to try in order.
        addr: the address to listen on.
        prometheus_registry: what to expose (default: ``prometheus_client.REGISTRY``).

    Returns:
        The running :class:`MetricsServer` (its ``port`` is the one bound).

    Raises:
        OSError: none of ``ports`` was free.
    """
    candidates = [ports] if isinstance(ports, int) else list(ports)
    last: OSError | None = None
    for port in candidates:
        try:
            server, thread = start_http_server(port, addr=addr, registry=prometheus_registry)
        except OSError as exc:
            last = exc
            continue
        return MetricsServer(port, server, thread)
    raise OSError(f"no free port for metrics among {candidates}: {last}")


def _check_buckets(bounds: Sequence[float]) -> tuple[float, ...]:
    values = tuple(float(bound) for bound in bounds)
    if not values or any(b <= 0 for b in values) or list(values) != sorted(set(values)):
        raise ValueError(f"buckets must be increasing positive numbers, got {bounds!r}")
    if values[-1] == float("inf"):
        values = values[:-1]
    return values
