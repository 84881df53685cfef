"""The benchmark suite runs end to end in its smallest preset (N=20, every server)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.servers import SERVERS

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_preset_measures_every_server(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--no-chart", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "latest.json").read_text())
    records = results["records"]
    assert not [r for r in records if r["scenario"] == "error"]
    for server in SERVERS:
        bursts = [
            r
            for r in records
            if r["scenario"] == "fanout" and r["phase"] == "burst" and r["server"] == server
        ]
        assert bursts, f"no fan-out burst measured for {server}"
        for burst in bursts:
            assert burst["complete"], burst
            assert burst["received"] == burst["expected"] == 20 * burst["count"]
            assert burst["deliveries_per_s"] > 0
            assert burst["server_cpu_s"] >= 0
        (latency,) = [
            r
            for r in records
            if r["scenario"] == "fanout" and r["phase"] == "latency" and r["server"] == server
        ]
        assert latency["complete"]
        assert 0 < latency["p50_ms"] <= latency["p99_ms"]
        (memory,) = [r for r in records if r["scenario"] == "memory" and r["server"] == server]
        assert memory["rss_connected_mib"] > 0
    assert SERVERS["wsr-websockets"].label in done.stdout
    assert "Targets" in done.stdout
