"""Test-ready time: restoring a snapshot vs a cold boot, without and with an NVMe disk (hot-added after restore).

Test-ready means GuestSession.start() returned: the shell answers and, with NVMe, the guest shows the
namespace. Cold and restored runs are interleaved; the snapshot is made once before timing starts.
Prints medians and the speed-up per configuration (target >= 15x).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from target import print_target  # bench/target.py (scripts run from bench/ on sys.path)

from hil.devices.storage import Nvme
from hil.guest.profiles import GuestOptions, get_profile
from hil.session import GuestSession, PlannedDevice


def ready_seconds(run_dir: Path, nvme: bool, snapshot: bool, warm_up: bool = False) -> float:
    devices = [PlannedDevice(Nvme("nvme0", size_mib=16))] if nvme else []
    started = time.monotonic()
    with GuestSession(get_profile("reference"), GuestOptions(accel="tcg"), run_dir, devices=devices,
                      snapshot=snapshot) as session:  # fmt: skip
        session.start()
        elapsed = time.monotonic() - started
        if snapshot and not warm_up and not session.snapshot_info.get("restored"):
            raise RuntimeError(f"expected a restore, got {session.snapshot_info}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as scratch:
        for nvme in (False, True):
            label = "with NVMe" if nvme else "without NVMe"
            ready_seconds(Path(scratch) / f"warm-{nvme}", nvme, snapshot=True, warm_up=True)  # make or find it
            cold, restored = [], []
            for index in range(args.rounds):
                cold.append(ready_seconds(Path(scratch) / f"cold-{nvme}-{index}", nvme, snapshot=False))
                restored.append(ready_seconds(Path(scratch) / f"restore-{nvme}-{index}", nvme, snapshot=True))
                print(f"{label} round {index + 1}: cold {cold[-1]:.2f} s, restored {restored[-1]:.2f} s", flush=True)
            cold_median, restored_median = statistics.median(cold), statistics.median(restored)
            print(f"{label}: cold {cold_median:.2f} s, restored {restored_median:.2f} s, "
                  f"speed-up {cold_median / restored_median:.1f}x")  # fmt: skip
            results.append((label, cold_median / restored_median, restored_median))
    (_, plain, _), (_, with_nvme, nvme_ready) = results
    print_target("snapshot_restore", f"{plain:.1f}x without NVMe, {with_nvme:.1f}x and {nvme_ready:.2f} s with NVMe",
                 ">= 15x both, <= 0.35 s with NVMe", plain >= 15 and with_nvme >= 15 and nvme_ready <= 0.35)


if __name__ == "__main__":
    main()
