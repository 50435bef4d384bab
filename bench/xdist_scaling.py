"""pytest-xdist scaling of guest tests: the same 20 tests, each on its own fresh guest, with -n 1 and -n 2.

Each test gets a guest through the plugin's `hil_session` fixture and runs a few commands. With snapshot
support in GuestSession (`snapshot=True`), every test's guest is restored from one snapshot (made by a
warm-up run that is not timed); without it, every test cold-boots its own guest (`hil_fresh`), which is
much slower but scales the same way. The -n 1 and -n 2 runs are interleaved (`--pairs`) so drift in the
host's load hits both alike; prints each pair, the medians and their ratio (target >= 1.7x on 2 cores), and
says which mode ran.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path

from target import print_target  # bench/target.py (scripts run from bench/ on sys.path)

from hil.session import GuestSession

TARGET = 1.7
TEST_FILE = """
import pytest

pytestmark = [pytest.mark.hil_fresh{devices}]


@pytest.mark.parametrize("number", range({count}))
def test_guest(hil_session, number):
    assert hil_session.run(f"echo $(({{number}} * 3))").output.strip() == str(number * 3)
    assert hil_session.run("grep -c ^processor /proc/cpuinfo").status == 0
"""


def snapshots_supported() -> bool:
    return "snapshot" in inspect.signature(GuestSession).parameters


def run_pytest(folder: Path, workers: int, selection: str, snapshot: bool) -> float:
    plugin = [] if any(ep.name == "hil" for ep in entry_points(group="pytest11")) else ["-p", "hil.pytest_plugin"]
    argv = [
        sys.executable,
        "-m",
        "pytest",
        *plugin,
        "-p",
        "no:cacheprovider",
        "-q",
        "-n",
        str(workers),
        "--hil-artifacts",
        str(folder / f"artifacts-n{workers}"),
        "test_bench.py",
        "-k",
        selection,
    ]
    if snapshot:
        argv.append("--hil-snapshot")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    started = time.monotonic()
    done = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"pytest -n {workers} failed:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=20)
    parser.add_argument("--nvme", action="store_true", help="give every guest an NVMe disk (hot-added on restore)")
    parser.add_argument("--cold", action="store_true", help="cold boots even if snapshots are supported")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved (-n 1, -n 2) measurements")
    args = parser.parse_args()
    snapshot = snapshots_supported() and not args.cold
    devices = ', pytest.mark.hil_devices("nvme:nvme0")' if args.nvme else ""
    print(
        f"mode: {'snapshot restore per test' if snapshot else 'cold boot per test'}"
        f"{' (GuestSession has no snapshot option)' if not snapshots_supported() else ''}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="hil-bench-xdist-") as scratch:
        folder = Path(scratch)
        (folder / "test_bench.py").write_text(TEST_FILE.format(count=args.tests, devices=devices))
        if snapshot:
            warm = run_pytest(folder, 1, "test_guest[0]", snapshot)
            print(f"warm-up (makes the snapshot if none is cached): {warm:.1f} s", flush=True)
        ones, twos = [], []
        for pair in range(args.pairs):
            ones.append(run_pytest(folder, 1, "test_guest", snapshot))
            twos.append(run_pytest(folder, 2, "test_guest", snapshot))
            print(f"pair {pair + 1}: -n 1 {ones[-1]:.1f} s, -n 2 {twos[-1]:.1f} s for {args.tests} tests", flush=True)
    one, two = statistics.median(ones), statistics.median(twos)
    print(f"medians: -n 1 {one:.1f} s, -n 2 {two:.1f} s on {os.cpu_count()} CPUs")
    print_target("xdist_scaling", f"-n 2 {one / two:.2f}x faster than -n 1", f">= {TARGET}x", one / two >= TARGET)


if __name__ == "__main__":
    main()
