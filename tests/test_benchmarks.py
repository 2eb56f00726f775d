"""Each benchmark script starts and explains itself (`--help`): they run outside the suite
(they take minutes and need wrk), so this catches a script broken by a change elsewhere."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script", ["ingest.py", "latency.py", "soak.py", "retention.py"])
def test_benchmark_script_explains_itself(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
