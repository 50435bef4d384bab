"""Memory of the hil process per running VM: boot N reference guests in one process, one after the other, and
watch this process's resident set grow (QEMU's own memory is its own process and not counted).

Prints RSS after imports and the accelerator choice (the baseline), after each boot, the growth per VM
((RSS with N VMs - baseline) / N, target <= 60 MB) and the marginal cost of VMs after the first, which leaves
out one-time costs (modules imported on the first boot, thread pools).
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import threading
import time
from pathlib import Path

from target import print_target  # bench/target.py (scripts run from bench/ on sys.path)

from hil.boot import DEFAULT_FACTOR
from hil.guest.profiles import GuestOptions, get_profile
from hil.qemu.accel import choose_accel
from hil.session import GuestSession

TARGET_MB = 60.0


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def settled_rss() -> float:
    gc.collect()
    time.sleep(0.5)  # let QMP and console threads finish what the last command started
    return rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=4, help="how many VMs to run at once")
    parser.add_argument("--memory", type=int, default=256, help="guest memory in MiB (QEMU's, not counted)")
    args = parser.parse_args()
    profile = get_profile("reference")
    options = GuestOptions(smp=1, memory_mb=args.memory)
    accel = choose_accel("auto", profile.kvm_probe(options))
    options = GuestOptions(smp=1, memory_mb=args.memory, accel=accel.name)
    sessions: list[GuestSession] = []
    with tempfile.TemporaryDirectory(prefix="hil-bench-rss-") as scratch:
        baseline = settled_rss()
        print(f"baseline (imports, accelerator {accel.name}): {baseline:.1f} MB")
        readings = []
        try:
            for index in range(args.vms):
                session = GuestSession(
                    profile, options, Path(scratch) / f"vm{index}", factor=DEFAULT_FACTOR[accel.name]
                )
                session.start()
                session.run("uname -r; cat /proc/meminfo | head -3")
                sessions.append(session)
                readings.append(settled_rss())
                qemu = rss_mb(session.machine.process.pid) if session.machine.process else 0.0
                print(
                    f"{index + 1} VM(s) running: RSS {readings[-1]:.1f} MB (+{readings[-1] - baseline:.1f}), "
                    f"{threading.active_count()} threads; this VM's QEMU (not counted): {qemu:.0f} MB",
                    flush=True,
                )
        finally:
            for session in sessions:
                session.close()
    per_vm = (readings[-1] - baseline) / len(readings)
    if len(readings) > 1:
        marginal = (readings[-1] - readings[0]) / (len(readings) - 1)
        print(f"marginal per VM after the first: {marginal:.1f} MB")
    print_target("rss_per_vm", f"{per_vm:.1f} MB per VM", f"<= {TARGET_MB:.0f} MB", per_vm <= TARGET_MB)


if __name__ == "__main__":
    main()
