"""Run the benchmark suite and report: ``python -m benchmarks [--quick | --full]``.

Prints the tables, writes ``benchmarks/results/latest.json`` (plus a timestamped
copy) and a PNG chart, and with ``--docs`` the docs page
``docs/benchmarks/results.md`` with its chart.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.harness import ROOT
from benchmarks.servers import SERVERS
from benchmarks.suite import PRESETS, Suite
from benchmarks.wire import raise_nofile

SCENARIOS = ("fanout", "targeted", "memory", "stall", "churn", "cross")
PACKAGES = (
    "wsregistry",
    "websockets",
    "starlette",
    "fastapi",
    "uvicorn",
    "python-socketio",
    "redis",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    preset = parser.add_mutually_exclusive_group()
    for name in PRESETS:
        preset.add_argument(
            f"--{name}", dest="preset", action="store_const", const=name, help=f"the {name} preset"
        )
    parser.set_defaults(preset="quick")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of: " + ", ".join(SERVERS),
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset of: " + ", ".join(SCENARIOS),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "results",
        help="where JSON, chart and logs go",
    )
    parser.add_argument(
        "--docs", action="store_true", help="also write docs/benchmarks/results.md and its chart"
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="the servers' event loop (the client uses uvloop when installed)",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    return parser


def _meta(preset: str, loop: str) -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "missing"
    return {
        "preset": preset,
        "loop": loop,
        "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_before": _loadavg(),
    }


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


class Progress:
    """One status line per session on stderr, with the elapsed time."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, index: int, total: int, label: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{index:>2}/{total}] {elapsed:6.1f}s  {label}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the suite; returns 1 if a session failed, else 0."""
    args = _parser().parse_args(argv)
    servers = tuple(s for s in args.servers.split(",") if s)
    scenarios = {s for s in args.scenarios.split(",") if s}
    unknown = [s for s in servers if s not in SERVERS] + [
        s for s in scenarios if s not in SCENARIOS
    ]
    if unknown:
        print(f"unknown server or scenario: {', '.join(unknown)}", file=sys.stderr)
        return 2
    raise_nofile()
    out: Path = args.out
    logdir = out / "logs"
    logdir.mkdir(parents=True, exist_ok=True)
    meta = _meta(args.preset, args.loop)
    suite = Suite(PRESETS[args.preset], servers, logdir, loop=args.loop, redis_url=args.redis_url)
    sessions = suite.plan(scenarios)
    print(
        f"wsregistry benchmarks, preset {args.preset}: {sessions} sessions (logs in {logdir})",
        file=sys.stderr,
    )
    started = time.monotonic()
    asyncio.run(suite.run(Progress()))
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["loadavg_after"] = _loadavg()

    records = suite.records
    tables = report.build_tables(records)
    targets = report.check_targets(records)
    notes = list(suite.notes)
    notes += report.client_check(records)
    errors = [r["error"] for r in records if r.get("scenario") == "error"]
    notes += [f"FAILED {e}" for e in errors]

    print()
    for table in tables:
        print(table.text(), end="\n\n")
    print("Targets\n-------")
    print("\n".join(targets) or "(none evaluated)")
    print("\nNotes\n-----")
    print("\n".join(notes))

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    payload = {"meta": meta, "targets": targets, "notes": notes, "records": records}
    text = json.dumps(payload, indent=1, default=str)
    (out / f"results-{stamp}.json").write_text(text)
    (out / "latest.json").write_text(text)
    chart = out / "fanout.png"
    has_chart = not args.no_chart and report.write_chart(chart, records)
    print(f"\nresults: {out / 'latest.json'}" + (f", chart: {chart}" if has_chart else ""))
    if args.docs:
        docs = ROOT / "docs" / "benchmarks"
        docs.mkdir(parents=True, exist_ok=True)
        if has_chart:
            shutil.copyfile(chart, docs / "fanout.png")
        report.write_markdown(
            docs / "results.md", meta, tables, targets, notes, "fanout.png" if has_chart else None
        )
        (docs / "results.json").write_text(json.dumps(payload, separators=(",", ":"), default=str))
        print(f"docs: {docs / 'results.md'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
