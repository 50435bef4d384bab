"""Every bench, one after another on this machine, then their verdict lines together (a table for
bench/README.md). Needs HIL_REDOX_PKGS for redox_kernel_run (skipped without it).

    .venv/bin/python bench/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# script, its arguments (full), its arguments (--quick)
BENCHES = (
    ("boot_overhead.py", ["--pairs", "5"], ["--pairs", "2"]),
    ("snapshot_restore.py", ["--rounds", "5"], ["--rounds", "2"]),
    ("console_throughput.py", [], ["--sizes", "10,25"]),
    ("xdist_scaling.py", ["--pairs", "3"], ["--pairs", "1"]),
    ("rss_per_vm.py", [], []),
    ("assemble_speed.py", [], []),
    ("redox_kernel_run.py", ["--runs", "5"], ["--runs", "3"]),
    ("bisect_efficiency.py", ["--trials", "3000"], ["--trials", "300"]),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds each (figures are noisier)")
    args = parser.parse_args()
    verdicts = []
    for script, full, quick in BENCHES:
        if script == "redox_kernel_run.py" and not os.environ.get("HIL_REDOX_PKGS"):
            verdicts.append(f"{script[:-3]}: skipped (HIL_REDOX_PKGS is not set)")
            continue
        print(f"== {script}", flush=True)
        done = subprocess.run([sys.executable, str(HERE / script), *(quick if args.quick else full)],
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
        print(done.stdout, end="", flush=True)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        failed = f"{script[:-3]}: failed (exit {done.returncode})"
        verdicts.append(lines[-1] if done.returncode == 0 and lines else failed)
    print(f"\n{datetime.date.today()}, {os.cpu_count()} CPUs:")
    for verdict in verdicts:
        print(f"  {verdict}")


if __name__ == "__main__":
    main()
