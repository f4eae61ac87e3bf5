"""benchmarks/playground_frames.py (the playground's frame sizes, and with --browser the page's drawing times)
runs on a small network and reports what it promises. No time or size is asserted here: the size bound of a big
network's frame is tests/test_playground.py's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "playground_frames.py"


def test_the_frame_benchmark_reports_sizes_and_parts():
    result = subprocess.run([sys.executable, str(SCRIPT), "--nets", "1x3,2x20", "--json"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    small, wide = report["frames"]
    assert (small["net"], small["weights"]) == ("1x3", 2 * 3 + 3 * 1)
    assert (wide["net"], wide["weights"]) == ("2x20", 2 * 20 + 20 * 20 + 20 * 1)
    for entry in report["frames"]:
        assert entry["frame_bytes"] > sum(entry["largest_parts"].values()) > 0 and entry["build_ms"] > 0
    assert "browser" not in report and "1x3:" in result.stdout
