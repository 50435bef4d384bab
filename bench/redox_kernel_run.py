"""Where a Redox kernel run (`hil run kernel-smoke`) spends its time, as parts of the whole (target <= 1.5 s).

Runs `hil run kernel-smoke --packages DIR` N times (the disk comes from the assembled-disk cache after the
first) and splits each run's wall time, from report.json and the process's own clock, into:

- the hil process outside its run: Python start, imports, option checks, and exit (wall - duration_s);
- boot to the hand-off: QEMU start to the kernel's `Bootstrap entry point` (firmware, bootloader, kernel);
- the probe: the initfs probe's cases, until its result line;
- the run's own setup and teardown: the disk and its overlay, QEMU's start and QMP, then QEMU's exit and
  report.json (duration_s less the two parts above).

Needs real Redox packages: --packages or HIL_REDOX_PKGS (the folder holding kernel.pkgar, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from target import print_target  # bench/target.py (scripts run from bench/ on sys.path)

PARTS = ("process start/exit", "boot to hand-off", "probe", "setup + teardown")


def one_run(packages: str, report_dir: Path, scenario: str) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hil.cli", "run", scenario, "--packages", packages,
                           "--report-dir", str(report_dir)], capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - started
    report = json.loads((report_dir / "report.json").read_text())
    if done.returncode != 0:
        raise SystemExit(f"{scenario} did not pass: {report.get('reason')}")
    handoff = next(stage["seconds"] for stage in report["stages"] if stage["name"] == "userspace")
    probe = sum(step["seconds"] for step in report["steps"])
    inside = report["duration_s"]  # the runner's clock, from its start to the report
    return {
        "wall": wall,
        "process start/exit": max(wall - inside, 0.0),
        "boot to hand-off": handoff,
        "probe": probe,
        "setup + teardown": max(inside - handoff - probe, 0.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", default=os.environ.get("HIL_REDOX_PKGS"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scenario", default="kernel-smoke")
    args = parser.parse_args()
    if not args.packages:
        raise SystemExit("give --packages DIR or set HIL_REDOX_PKGS (the folder holding kernel.pkgar)")
    with tempfile.TemporaryDirectory(prefix="hil-kernel-run-") as scratch:
        runs = [one_run(args.packages, Path(scratch) / f"run{index}", args.scenario) for index in range(args.runs)]
    walls = [run["wall"] for run in runs]
    median = statistics.median(walls)
    print(f"{args.scenario}: {args.runs} runs, wall median {median:.2f} s (min {min(walls):.2f}, max {max(walls):.2f})")
    for part in PARTS:
        values = [run[part] for run in runs]
        share = statistics.median(values) / median
        print(f"  {part:<18} median {statistics.median(values):.3f} s  ({share:.0%} of the wall time)")
    print_target("redox_kernel_run", f"{args.scenario} wall median {median:.2f} s", "<= 1.5 s", median <= 1.5)


if __name__ == "__main__":
    main()
