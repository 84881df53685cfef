"""The metrics-overhead benchmark runs end to end in a tiny configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_metrics_overhead_benchmark_prints_its_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.metrics_overhead", "-n", "50", "--rounds", "3",
         "--broadcasts", "2", "--scrape"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| send_nowait")]
    assert len(rows) == 1
    assert "writer task, time_queued_frames=True" in done.stdout
    assert "target: on/off >= 0.95" in done.stdout
    assert "one scrape:" in done.stdout
