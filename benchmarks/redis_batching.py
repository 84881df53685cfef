"""The Redis backend's publish path, today's vs the new one, in the same run.

Two processes per variant, on the same Redis: ``sub`` holds ``--keys`` connections
(counting transports with the non-blocking fast path, every one a key of its own;
the first ``--members`` are also in group ``fan``); ``pub`` publishes. Variants:

* ``today``: the backend at ``--baseline`` (a git revision, default the commit
  before issue 11) without ``hiredis`` (redis-py's pure-Python parser, as the
  ``redis`` extra installed it);
* ``new``: this working tree, with ``hiredis`` and the default ``publish_linger``;
* ``new-nohiredis`` (with ``--variants``): the new backend, pure-Python parser.

Scenarios, each run for every variant in alternating order, ``--rounds`` times:

* ``targeted``: ``--sends`` sends to one remote key each, as fast as ``await send`` goes;
* ``fanout``: ``--broadcasts`` group broadcasts, ``--members`` remote deliveries each
  (the cross-process cost of a broadcast);
* ``fanout-all``: ``--wide`` broadcasts to everyone, ``--keys`` remote deliveries each
  (bounded by the subscriber's local fan-out, i.e. the core, not the backend);
* ``lone``: ``--lone`` sends paced 5 ms apart (no load: the linger must not delay them).

Reported: deliveries per second (first publish to last receipt), latency p50/p99
(publish call to receipt by the transport, one clock: ``time.monotonic`` is
system-wide on Linux), publisher and subscriber CPU microseconds per message, and
the new/today ratio per round with median [min-max].

Run: ``python -m benchmarks.redis_batching`` (Redis on 127.0.0.1:6379; the repository's
git history for the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
BASELINE = "b092ec3"  # the Redis backend before issue 11
SCENARIOS = ("targeted", "fanout", "fanout-all", "lone")
VARIANTS = {
    "today": ("baseline", False),
    "new": ("tree", True),
    "new-nohiredis": ("tree", False),
}


# -- child processes ----------------------------------------------------------------------


class Counting:
    """A transport that counts frames and samples the latency of each distinct frame."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def send_nowait(self, data: str | bytes) -> bool:
        self.inbox.got(data)
        return True

    async def send(self, data: str | bytes) -> None:
        self.inbox.got(data)

    async def close(self, code: int, reason: str) -> None:
        pass


class Inbox:
    def __init__(self) -> None:
        self.expected = 0
        self.count = 0
        self.last = 0.0
        self.latencies: list[float] = []
        self.done: asyncio.Event = asyncio.Event()
        self._previous: object = None

    def reset(self, expected: int) -> None:
        self.expected, self.count, self.latencies = expected, 0, []
        self.done = asyncio.Event()
        self._previous = None

    def got(self, data: str | bytes) -> None:
        now = time.monotonic()
        self.count += 1
        self.last = now
        if data is not self._previous:  # one sample per message, not per delivery
            self._previous = data
            self.latencies.append(now - float(str(data)[2:]))
        if self.count >= self.expected:
            self.done.set()


async def child(role: str, namespace: str, keys: int, members: int) -> None:
    from wsregistry import Registry
    from wsregistry.backends.redis import RedisBackend

    registry = Registry(backend=RedisBackend(REDIS_URL, namespace=namespace))
    inbox = Inbox()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    async with registry:
        if role == "sub":
            for i in range(keys):
                groups = {"fan"} if i < members else set()
                await registry.connect(Counting(inbox), key=f"u{i}", groups=groups)
        reply(ready=True)
        while line := await reader.readline():
            command = json.loads(line)
            cpu = time.process_time()
            if command["do"] == "expect":
                inbox.reset(command["n"])
                reply(ok=True)
                await asyncio.wait_for(inbox.done.wait(), 120)
                reply(
                    last=inbox.last,
                    count=inbox.count,
                    cpu=time.process_time() - cpu,
                    latencies=_summary(inbox.latencies),
                )
            elif command["do"] == "cpu":
                reply(cpu=time.process_time())
            else:
                started = time.monotonic()
                reply(started=started, cpu=cpu)
                n, interval = command["n"], command.get("interval", 0.0)
                for i in range(n):
                    frame = f"t={time.monotonic()!r}"
                    if command["do"] == "fanout":
                        await registry.broadcast(frame, group="fan")
                    elif command["do"] == "fanout-all":
                        await registry.broadcast(frame)
                    else:
                        await registry.send(f"u{(i * 7919) % keys}", frame)
                    if interval:
                        await asyncio.sleep(interval)


def _summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000,
    }


# -- driver -------------------------------------------------------------------------------


class Proc:
    def __init__(self, role: str, src: Path, hiredis: bool, namespace: str, args: Any) -> None:
        env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
        prelude = "" if hiredis else "import sys; sys.modules['hiredis'] = None; "
        code = (
            prelude + "import asyncio, benchmarks.redis_batching as b; "
            f"asyncio.run(b.child({role!r}, {namespace!r}, {args.keys}, {args.members}))"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
            text=True,
        )
        self.read()  # ready

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("a benchmark process died")
        result: dict[str, Any] = json.loads(line)
        return result

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_variant(variant: str, sources: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    where, hiredis = VARIANTS[variant]
    namespace = f"bench-batch-{uuid.uuid4().hex[:8]}"
    sub = Proc("sub", sources[where], hiredis, namespace, args)
    pub = Proc("pub", sources[where], hiredis, namespace, args)
    results: dict[str, Any] = {}
    try:
        for scenario, do, n, deliveries, interval in (
            ("targeted", "send", args.sends, args.sends, 0.0),
            ("fanout", "fanout", args.broadcasts, args.broadcasts * args.members, 0.0),
            ("fanout-all", "fanout-all", args.wide, args.wide * args.keys, 0.0),
            ("lone", "send", args.lone, args.lone, 0.005),
        ):
            sub.ask(do="expect", n=deliveries)
            started = pub.ask(do=do, n=n, interval=interval)
            done = sub.read()
            pub_cpu = pub.ask(do="cpu")["cpu"] - started["cpu"]
            seconds = done["last"] - started["started"]
            results[scenario] = {
                "rate": done["count"] / seconds,
                "pub_us": pub_cpu / n * 1e6,
                "sub_us": done["cpu"] / n * 1e6,
                **done["latencies"],
            }
    finally:
        pub.stop()
        sub.stop()
    return results


def baseline_tree(revision: str, directory: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", revision, "src"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory / "src"


def main(args: argparse.Namespace) -> None:
    variants: list[str] = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"baseline": baseline_tree(args.baseline, Path(tmp)), "tree": ROOT / "src"}
        rounds: list[dict[str, dict[str, Any]]] = []
        for round_ in range(args.rounds):
            order = variants if round_ % 2 == 0 else variants[::-1]
            results = {variant: run_variant(variant, sources, args) for variant in order}
            rounds.append(results)
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print_report(rounds, variants, args)


def _spread(values: list[float], fmt: str = "{:.0f}") -> str:
    middle, low, high = (
        fmt.format(v) for v in (statistics.median(values), min(values), max(values))
    )
    return f"{middle} [{low}-{high}]"


def print_report(
    rounds: list[dict[str, dict[str, Any]]], variants: list[str], args: argparse.Namespace
) -> None:
    print(
        f"\n{args.keys} remote connections; {args.sends} targeted sends, {args.broadcasts} "
        f"broadcasts to {args.members} members, {args.wide} to all, {args.lone} lone sends "
        f"5 ms apart; {args.rounds} rounds, median [min-max]"
    )
    header = (
        f"{'scenario':<10}{'variant':<15}{'deliveries/s':>26}{'p50 ms':>20}{'p99 ms':>20}"
        f"{'pub us/msg':>20}{'sub us/msg':>20}"
    )
    print(header)
    print("-" * len(header))
    for scenario in SCENARIOS:
        for variant in variants:
            cells = [r[variant][scenario] for r in rounds]
            print(
                f"{scenario:<11}{variant:<14}"
                f"{_spread([c['rate'] for c in cells]):>26}"
                f"{_spread([c['p50_ms'] for c in cells], '{:.2f}'):>20}"
                f"{_spread([c['p99_ms'] for c in cells], '{:.2f}'):>20}"
                f"{_spread([c['pub_us'] for c in cells], '{:.1f}'):>20}"
                f"{_spread([c['sub_us'] for c in cells], '{:.1f}'):>20}"
            )
    if "today" in variants and "new" in variants:
        print("\nnew / today, per round (median [min-max]):")
        for scenario in SCENARIOS:
            rate = [r["new"][scenario]["rate"] / r["today"][scenario]["rate"] for r in rounds]
            p99 = [r["new"][scenario]["p99_ms"] - r["today"][scenario]["p99_ms"] for r in rounds]
            print(
                f"  {scenario:<11} rate x{_spread(rate, '{:.2f}')}   "
                f"p99 {_spread(p99, '{:+.2f}')} ms"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--broadcasts", type=int, default=20_000)
    parser.add_argument("--wide", type=int, default=300)
    parser.add_argument("--lone", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--variants", default="today,new")
    main(parser.parse_args())
