"""Every bench script still starts: its imports resolve and its arguments parse (`--help`). The benches run
only by hand (bench/run_all.py), so a rename inside hil would otherwise break them unseen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if path.name != "target.py")


def test_every_bench_is_found() -> None:
    assert {"boot_overhead.py", "rss_per_vm.py", "run_all.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_bench_starts(script: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
