"""Turn the records of a run into tables (terminal and Markdown), targets and a chart."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.servers import SERVERS

__all__ = ["Table", "build_tables", "check_targets", "write_chart", "write_markdown"]

Record = dict[str, Any]
ANCHOR = "websockets"


@dataclass
class Table:
    """A titled table with optional notes under it."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
        lines = [self.title, "-" * len(self.title)]
        lines.append("  ".join(h.ljust(w) for h, w in zip(self.headers, widths, strict=True)))
        for row in self.rows:
            cells = [row[0].ljust(widths[0])] + [
                c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells))
        lines.extend(f"  {note}" for note in self.notes)
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join([":--"] + ["--:"] * (len(self.headers) - 1)) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in self.rows)
        if self.notes:
            lines.append("")
            lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines)


def _label(server: str) -> str:
    kind = SERVERS.get(server)
    return kind.label if kind else server


def _select(records: Iterable[Record], **match: Any) -> list[Record]:
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def _size(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


@dataclass
class Cell:
    """The repeats of one (scenario, server, n, size) measurement, summarised."""

    rate: float | None = None
    spread: float | None = None
    complete: bool = True
    server_cpu: float | None = None
    client_cpu: float | None = None
    p50: float | None = None
    p99: float | None = None
    p99_round: float | None = None
    rss: float | None = None
    per_cpu: float | None = None
    runs: int = 0


def cell(
    records: list[Record], scenario: str, server: str, n: int, size: int, *, pooled: bool = False
) -> Cell:
    """Summarise the bursts (median, spread = (max - min) / median) and latency of a cell.

    With ``pooled``, the rate is all deliveries over the total time of the bursts.
    """
    bursts = _select(records, scenario=scenario, server=server, n=n, size=size, phase="burst")
    latency = _select(records, scenario=scenario, server=server, n=n, size=size, phase="latency")
    result = Cell()
    if bursts:
        rates = [float(r["deliveries_per_s"]) for r in bursts]
        result.rate = statistics.median(rates)
        if pooled:
            seconds = sum(float(r["seconds"]) for r in bursts)
            result.rate = sum(int(r["received"]) for r in bursts) / seconds
        result.per_cpu = sum(int(r["received"]) for r in bursts) / max(
            0.01, sum(float(r["server_cpu_s"]) for r in bursts)
        )
        result.spread = (max(rates) - min(rates)) / result.rate if result.rate else None
        result.complete = all(r["complete"] for r in bursts)
        result.server_cpu = statistics.median(float(r["server_cpu_s"]) for r in bursts)
        result.client_cpu = statistics.median(float(r["client_cpu_s"]) for r in bursts)
        result.rss = bursts[0].get("rss_per_conn_kib")
        result.runs = len(bursts)
    if latency:
        result.p50 = float(latency[0]["p50_ms"])
        result.p99 = float(latency[0]["p99_ms"])
        result.p99_round = float(latency[0].get("p99_median_round_ms", result.p99))
    return result


def _rate_cell(c: Cell) -> str:
    text = _rate(c.rate)
    if not c.complete:
        text += " (stalled)"
    return text


def _spread(c: Cell) -> str:
    return "-" if c.spread is None or c.runs < 2 else f"±{c.spread * 50:.0f}%"


def _servers(records: list[Record], scenario: str) -> list[str]:
    present = {r.get("server") for r in records if r.get("scenario") == scenario}
    return [name for name in SERVERS if name in present]


def _sizes_ns(records: list[Record], scenario: str) -> tuple[list[int], list[int]]:
    chosen = [r for r in records if r.get("scenario") == scenario and r.get("phase") == "burst"]
    return sorted({int(r["size"]) for r in chosen}), sorted({int(r["n"]) for r in chosen})


def _throughput_tables(records: list[Record], scenario: str, title: str) -> list[Table]:
    tables = []
    sizes, ns = _sizes_ns(records, scenario)
    for size in sizes:
        table = Table(
            f"{title}, {_size(size)} messages",
            [
                "server",
                "N",
                "deliveries/s",
                "spread",
                "vs ws",
                "per srv CPU-s",
                "vs ws",
                "p50 ms",
                "p99 ms",
                "p99 typ. ms",
                "vs ws",
                "server CPU s",
                "client CPU s",
            ],
        )
        for n in ns:
            anchor = cell(records, scenario, ANCHOR, n, size)
            for server in _servers(records, scenario):
                c = cell(records, scenario, server, n, size)
                if c.runs == 0:
                    continue
                table.rows.append(
                    [
                        _label(server),
                        str(n),
                        _rate_cell(c),
                        _spread(c),
                        _ratio(c.rate, anchor.rate),
                        _rate(c.per_cpu),
                        _ratio(c.per_cpu, anchor.per_cpu),
                        _num(c.p50),
                        _num(c.p99),
                        _num(c.p99_round),
                        _ratio(c.p99_round, anchor.p99_round),
                        _num(c.server_cpu),
                        _num(c.client_cpu),
                    ]
                )
        tables.append(table)
    return tables


TRANSPORT_OF = {
    "wsr-websockets": "websockets",
    "wsr-starlette": "naive",
    "wsr-fastapi": "naive",
    "wsr-fastapi-route": "naive",
    "wsr-starlette-asgi": "naive",
}
"""The anchor on the same transport as each wsregistry server (for "beyond the transport")."""


def _memory_table(records: list[Record]) -> Table | None:
    idle = _select(records, scenario="memory", phase="idle")
    heap = _select(records, scenario="memory", phase="heap")
    if not idle and not heap:
        return None
    n = max((int(r["n"]) for r in idle), default=0)
    heap_n = max((int(r["n"]) for r in heap), default=0)
    table = Table(
        "Memory per idle connection",
        [
            "server",
            f"RSS KiB (N={n})",
            "RSS beyond transport",
            f"heap KiB (N={heap_n})",
            "heap beyond transport",
        ],
        notes=[
            "RSS: growth of the server's RSS from before the first connection to N idle ones, "
            "divided by N (after gc); includes allocator slack, so it is noisy.",
            "heap: Python allocations traced (tracemalloc) while the N clients connected, "
            "divided by N.",
            "'beyond transport': wsregistry + websockets minus the raw websockets server; "
            "wsregistry + Starlette and + FastAPI minus the naive Starlette server (so the "
            "FastAPI row also carries FastAPI's own per-connection cost).",
        ],
    )
    rss = {str(r["server"]): float(r["rss_per_conn_kib"]) for r in idle if int(r["n"]) == n}
    traced = {str(r["server"]): float(r["heap_per_conn_bytes"]) / 1024 for r in heap}
    for server in SERVERS:
        if server not in rss and server not in traced:
            continue
        base = TRANSPORT_OF.get(server)
        table.rows.append(
            [
                _label(server),
                _num(rss.get(server), 1),
                _num(_minus(rss, server, base), 1),
                _num(traced.get(server), 2),
                _num(_minus(traced, server, base), 2),
            ]
        )
    return table


def _minus(values: dict[str, float], server: str, base: str | None) -> float | None:
    if base is None or server not in values or base not in values:
        return None
    return values[server] - values[base]


def _stall_table(records: list[Record]) -> Table | None:
    if not _select(records, scenario="stall"):
        return None
    table = Table(
        "Slow consumers: 1% of clients never read (SO_RCVBUF 4 KiB), 4 KiB messages",
        [
            "server",
            "healthy deliv/s, no stall",
            "with 1% stalled",
            "ratio",
            "ratio, last 4 bursts",
            "per CPU-s ratio",
            "healthy got all",
            "stalled dropped by server",
        ],
        notes=[
            "Twelve bursts of 512 KiB per connection: a stalled client ends 6 MiB behind, beyond "
            "the ~3 MiB the kernel buffers per loopback socket and wsregistry's 1 MiB queue.",
            "Rates pool all bursts (healthy deliveries / total time); 'last 4 bursts' pools "
            "the end of the run, after a server that drops stalled clients has done so; "
            "'per CPU-s': healthy deliveries per server CPU-second, stalled run / baseline.",
            "'dropped by server': stalled connections the server no longer holds at the end.",
        ],
    )
    for server in _servers(records, "stall"):
        n = int(_select(records, scenario="stall", server=server)[0]["n"])
        base = cell(records, "stall-baseline", server, n, 4096, pooled=True)
        stalled = cell(records, "stall", server, n, 4096, pooled=True)
        late_base = _late_rate(records, "stall-baseline", server)
        late = _late_rate(records, "stall", server)
        status = _select(records, scenario="stall", server=server, phase="status")
        closed = "-"
        if status:
            dropped = int(status[0]["n"]) - int(status[0]["remaining"])
            closed = f"{dropped}/{status[0]['stalled']}"
        table.rows.append(
            [
                _label(server),
                _rate_cell(base),
                _rate_cell(stalled),
                _ratio(stalled.rate, base.rate),
                _ratio(late, late_base),
                _ratio(stalled.per_cpu, base.per_cpu),
                "yes" if stalled.complete and stalled.runs else "NO",
                closed,
            ]
        )
    return table


def _late_rate(records: list[Record], scenario: str, server: str, last: int = 4) -> float | None:
    bursts = _select(records, scenario=scenario, server=server, phase="burst")
    if not bursts or not all(r["complete"] for r in bursts):
        return None
    tail = sorted(bursts, key=lambda r: int(r["repeat"]))[-last:]
    return sum(int(r["received"]) for r in tail) / sum(float(r["seconds"]) for r in tail)


def _churn_table(records: list[Record]) -> Table | None:
    if not _select(records, scenario="churn"):
        return None
    table = Table(
        "Churn: 10% of clients reset (TCP RST) mid-broadcast",
        [
            "server",
            "healthy deliv/s",
            "healthy got all",
            "connections left",
            "expected",
            "cleanup s",
            "send errors",
        ],
    )
    for server in _servers(records, "churn"):
        burst = _select(records, scenario="churn", server=server, phase="burst")
        cleanup = _select(records, scenario="churn", server=server, phase="cleanup")
        if not burst or not cleanup:
            continue
        b, c = burst[0], cleanup[0]
        errors = b.get("send_errors")
        table.rows.append(
            [
                _label(server),
                _rate(b["deliveries_per_s"]),
                "yes" if b["complete"] else "NO",
                str(c["remaining"]),
                str(c["expected"]),
                _num(c["cleanup_s"]),
                "-" if errors is None else str(errors),
            ]
        )
    return table


def _cross_table(records: list[Record]) -> Table | None:
    if not _select(records, scenario="cross"):
        return None
    sizes, ns = _sizes_ns(records, "cross")
    table = Table(
        "Cross-process: 2 server processes + Redis, broadcast from one",
        ["server", "N", "size", "deliveries/s", "spread", "vs python-socketio", "p50 ms", "p99 ms"],
    )
    for size in sizes:
        for n in ns:
            reference = cell(records, "cross", "socketio", n, size)
            for server in _servers(records, "cross"):
                c = cell(records, "cross", server, n, size)
                table.rows.append(
                    [
                        _label(server),
                        str(n),
                        _size(size),
                        _rate_cell(c),
                        _spread(c),
                        _ratio(c.rate, reference.rate),
                        _num(c.p50),
                        _num(c.p99),
                    ]
                )
    return table


def build_tables(records: list[Record]) -> list[Table]:
    """Every table the records allow, in reading order."""
    tables = _throughput_tables(records, "fanout", "Fan-out: broadcast to N clients")
    tables += _throughput_tables(
        records, "targeted", "Targeted: each of N users gets its own message"
    )
    for extra in (
        _stall_table(records),
        _churn_table(records),
        _cross_table(records),
        _memory_table(records),
    ):
        if extra is not None:
            tables.append(extra)
    return tables


def check_targets(records: list[Record]) -> list[str]:
    """The issue's targets, each with where this run stands."""
    lines: list[str] = []
    sizes, ns = _sizes_ns(records, "fanout")

    def verdict(ok: bool | None) -> str:
        return "n/a " if ok is None else ("PASS" if ok else "MISS")

    def both(wall: bool, per_cpu: bool | None) -> str:
        return f"{verdict(wall)} [per CPU-s: {verdict(per_cpu).strip()}]"

    def at_least(c: Cell, ref: Cell, factor: float) -> bool | None:
        if c.per_cpu is None or ref.per_cpu is None:
            return None
        return c.per_cpu >= factor * ref.per_cpu

    for n in (n for n in ns if n in (1000, 5000)) if ns else ():
        for size in sizes:
            ws = cell(records, "fanout", ANCHOR, n, size)
            ours = cell(records, "fanout", "wsr-websockets", n, size)
            if ws.rate and ours.rate:
                typical = (ours.p99_round or 0) <= 1.2 * (ws.p99_round or 0)
                ok = ours.rate >= ws.rate and typical
                ok_cpu = bool(at_least(ours, ws, 1.0)) and typical
                lines.append(
                    f"{both(ok, ok_cpu)} wsregistry+websockets vs broadcast(), "
                    f"N={n} {_size(size)}: "
                    f"{ours.rate / ws.rate:.2f}x deliveries/s (target >= 1.0x; per server "
                    f"CPU-s {_ratio(ours.per_cpu, ws.per_cpu)}), typical p99 "
                    f"{_ratio(ours.p99_round, ws.p99_round)} (target <= 1.2x; all-sample p99 "
                    f"{_ratio(ours.p99, ws.p99)})"
                )
    for n in ns:
        for size in sizes:
            naive = cell(records, "fanout", "naive", n, size)
            sio = cell(records, "fanout", "socketio", n, size)
            ours = cell(records, "fanout", "wsr-starlette", n, size)
            if ours.rate and naive.rate:
                lines.append(
                    f"{both(ours.rate >= naive.rate, at_least(ours, naive, 1.0))} "
                    "wsregistry+Starlette vs naive loop, "
                    f"N={n} {_size(size)}: {ours.rate / naive.rate:.2f}x (target >= 1.0x; per "
                    f"server CPU-s {_ratio(ours.per_cpu, naive.per_cpu)})"
                )
            if ours.rate and sio.rate:
                lines.append(
                    f"{both(ours.rate >= 3.5 * sio.rate, at_least(ours, sio, 3.5))} "
                    "wsregistry+Starlette vs "
                    f"python-socketio, N={n} {_size(size)}: {ours.rate / sio.rate:.2f}x "
                    f"(target >= 3.5x; per server CPU-s {_ratio(ours.per_cpu, sio.per_cpu)})"
                )
    lines += _targets_0_2(records, both, at_least)
    for server in ("wsr-websockets", "wsr-starlette", "wsr-fastapi"):
        stall = _select(records, scenario="stall", server=server, phase="burst")
        if not stall:
            continue
        n = int(stall[0]["n"])
        base = cell(records, "stall-baseline", server, n, 4096, pooled=True)
        hit = cell(records, "stall", server, n, 4096, pooled=True)
        if base.rate and hit.rate:
            ok = hit.rate >= 0.9 * base.rate and hit.complete
            ok_cpu = bool(at_least(hit, base, 0.9)) and hit.complete
            lines.append(
                f"{both(ok, ok_cpu)} {_label(server)} with 1% stalled: healthy at "
                f"{hit.rate / base.rate:.2f}x of no-stall (target >= 0.9x; per server CPU-s "
                f"{_ratio(hit.per_cpu, base.per_cpu)}), all messages: "
                f"{'yes' if hit.complete else 'NO'}"
            )
    memory = _memory_table(records)
    if memory is not None:
        for row in memory.rows:
            heap_beyond, rss_beyond = row[4], row[2]
            if heap_beyond != "-":
                lines.append(
                    f"{verdict(float(heap_beyond) <= 2.0)} {row[0]} memory beyond transport: "
                    f"{heap_beyond} KiB Python heap per idle connection (target <= 2 KiB; "
                    f"RSS says {rss_beyond} KiB)"
                )
            elif rss_beyond != "-":
                lines.append(
                    f"{verdict(float(rss_beyond) <= 2.0)} {row[0]} memory beyond transport: "
                    f"{rss_beyond} KiB RSS per idle connection (target <= 2 KiB; noisy)"
                )
    sizes_x, ns_x = _sizes_ns(records, "cross")
    for n in ns_x:
        for size in sizes_x:
            sio = cell(records, "cross", "socketio", n, size)
            for server in ("wsr-starlette", "wsr-websockets"):
                ours = cell(records, "cross", server, n, size)
                if ours.rate and sio.rate:
                    lines.append(
                        f"{both(ours.rate >= 2 * sio.rate, at_least(ours, sio, 2.0))} "
                        f"{_label(server)} over Redis vs "
                        f"AsyncRedisManager, N={n}: {ours.rate / sio.rate:.2f}x (target >= 2x)"
                    )
    return lines


def _targets_0_2(
    records: list[Record],
    both: Callable[[bool, bool | None], str],
    at_least: Callable[[Cell, Cell, float], bool | None],
) -> list[str]:
    """Targets of the 0.2 issues: targeted sends and fan-out against the same stack."""
    lines: list[str] = []
    sizes, ns = _sizes_ns(records, "targeted")
    pairs = (
        ("wsr-websockets", ANCHOR),
        ("wsr-starlette", "naive"),
        ("wsr-starlette-asgi", "naive"),
        ("wsr-fastapi", "naive"),
        ("wsr-fastapi-route", "naive"),
    )
    for n in ns:
        for size in sizes:
            for server, anchor in pairs:
                ours = cell(records, "targeted", server, n, size)
                base = cell(records, "targeted", anchor, n, size)
                if ours.rate and base.rate:
                    lines.append(
                        f"{both(ours.rate >= 1.1 * base.rate, at_least(ours, base, 1.1))} "
                        f"targeted send, {_label(server)} vs {_label(anchor)}, "
                        f"N={n} {_size(size)}: {ours.rate / base.rate:.2f}x (target >= 1.1x; "
                        f"per server CPU-s {_ratio(ours.per_cpu, base.per_cpu)})"
                    )
    sizes, ns = _sizes_ns(records, "fanout")
    for n in ns:
        for size in sizes:
            ws = cell(records, "fanout", ANCHOR, n, size)
            for server, factor in (
                ("wsr-websockets", 1.25),
                ("wsr-starlette", 1.0),
                ("wsr-starlette-asgi", 1.0),
                ("wsr-fastapi", 1.0),
                ("wsr-fastapi-route", 1.0),
            ):
                ours = cell(records, "fanout", server, n, size)
                if ours.rate and ws.rate:
                    lines.append(
                        f"{both(ours.rate >= factor * ws.rate, at_least(ours, ws, factor))} "
                        f"fan-out, {_label(server)} vs broadcast(), N={n} {_size(size)}: "
                        f"{ours.rate / ws.rate:.2f}x (target >= {factor}x; per server CPU-s "
                        f"{_ratio(ours.per_cpu, ws.per_cpu)}), typical p99 "
                        f"{_ratio(ours.p99_round, ws.p99_round)}"
                    )
    memory = _memory_table(records)
    if memory is not None:
        for row in memory.rows:
            heap_beyond = row[4]
            if heap_beyond == "-" or str(row[0]).endswith("FastAPI"):
                continue  # FastAPI's own dependency-injected route is not ours to shrink
            bound = 2.0 if "plain route" in str(row[0]) else 1.0
            lines.append(
                f"{'PASS' if float(heap_beyond) <= bound else 'MISS'} {row[0]}: "
                f"{heap_beyond} KiB Python heap per idle connection beyond the transport "
                f"(0.2 target <= {bound:g} KiB)"
            )
    return lines


def client_check(records: list[Record]) -> list[str]:
    """Where the load client used more CPU than the server (it may have been the limit).

    Summed per cell (scenario, server, N, size) over its bursts; cells where the
    server used under 0.2 s are too short to judge at the OS's 10 ms resolution.
    The first line gives the highest client/server ratio seen.
    """
    cells: dict[tuple[str, str, int, int], list[float]] = {}
    for r in records:
        if r.get("phase") == "burst":
            key = (str(r["scenario"]), str(r["server"]), int(r["n"]), int(r["size"]))
            sums = cells.setdefault(key, [0.0, 0.0])
            sums[0] += float(r["server_cpu_s"])
            sums[1] += float(r["client_cpu_s"])
    judged = {key: c / s for key, (s, c) in cells.items() if s >= 0.2}
    if not judged:
        return []
    worst = max(judged, key=judged.__getitem__)
    lines = [
        f"load client CPU / server CPU: at most {judged[worst]:.2f} over {len(judged)} cells "
        f"({worst[0]} {_label(worst[1])} N={worst[2]} {_size(worst[3])})"
    ]
    lines += [
        f"client used MORE CPU than the server in {k[0]} {_label(k[1])} N={k[2]} {_size(k[3])}"
        for k, ratio in judged.items()
        if ratio > 1
    ]
    return lines


def write_markdown(
    path: Path,
    meta: dict[str, Any],
    tables: list[Table],
    targets: list[str],
    notes: list[str],
    chart: str | None,
) -> None:
    """The docs page of one run (``docs/benchmarks/results.md``)."""
    lines = [
        "# Benchmark results",
        "",
        "<!-- generated by `python -m benchmarks --docs`; do not edit by hand -->",
        "",
        f"Preset `{meta['preset']}`, run {meta['started']} on {meta['machine']}, "
        f"Python {meta['python']}, servers on `{meta['loop']}`. Load average before/after: "
        f"{meta['loadavg_before']} / {meta['loadavg_after']}.",
        "",
        "All servers ran in this one run, on the same machine, read by the same load client "
        "(a separate process). Ratios compare with `websockets.broadcast()` measured in the "
        "same run. The spread is (max - min) / 2 / median over the repeats. 'per srv CPU-s' "
        "is deliveries per server CPU-second, which other load on a shared machine moves "
        "much less than wall-clock rates. Latency is the fan-out time of one broadcast at a "
        "time, from the send call to each client's receipt (p50/p99 over a sample of up to "
        "200 clients); 'p99 typ.' is the median over rounds of each round's p99. A burst is "
        "a run of broadcasts back to back (at most 500 messages and 512 KiB per connection); "
        "deliveries/s counts from the first send call to the last healthy client's receipt. "
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
    ]
    if chart:
        lines += [f"![deliveries per second]({chart})", ""]
    lines += ["## Targets", ""]
    lines += [f"- {t}" for t in targets] or ["- no target could be evaluated in this run"]
    lines.append("")
    for table in tables:
        lines += [table.markdown(), ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += [
        "## Rerun",
        "",
        "```",
        "pip install -r requirements/bench.txt",
        "python -m benchmarks --quick     # a few minutes",
        "python -m benchmarks --full      # N up to 10k, repeats 3",
        "```",
        "",
    ]
    path.write_text("\n".join(lines))


def write_chart(path: Path, records: list[Record]) -> bool:
    """A bar chart of fan-out deliveries/s per server, one panel per message size."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    sizes, ns = _sizes_ns(records, "fanout")
    servers = _servers(records, "fanout")
    if not sizes or not servers:
        return False
    figure, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.2), squeeze=False)
    width = 0.8 / len(servers)
    for axis, size in zip(axes[0], sizes, strict=True):
        for index, server in enumerate(servers):
            values, low, high = [], [], []
            for n in ns:
                rates = [
                    float(r["deliveries_per_s"]) / 1e3
                    for r in _select(
                        records, scenario="fanout", server=server, n=n, size=size, phase="burst"
                    )
                ]
                median = statistics.median(rates) if rates else 0.0
                values.append(median)
                low.append(median - min(rates, default=0.0))
                high.append(max(rates, default=0.0) - median)
            positions = [i + (index - (len(servers) - 1) / 2) * width for i in range(len(ns))]
            axis.bar(positions, values, width, yerr=[low, high], capsize=2, label=_label(server))
        axis.set_xticks(range(len(ns)), [f"N={n}" for n in ns])
        axis.set_ylabel("thousand deliveries / s")
        axis.set_title(f"Broadcast fan-out, {_size(size)} messages (median, min-max)")
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
