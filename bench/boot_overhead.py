"""Boot-to-ready with hil vs raw QEMU started with the same argv and waiting for the same marker.

Runs are interleaved (hil, raw, hil, raw, ...) so drift on the host hits both sides alike. hil's time counts
from before it builds the machine (overlay, argv, QMP, console attach) to the ready stage; raw QEMU's from
before Popen to the marker on its serial socket. Prints both medians and their ratio (target <= 1.03x).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from target import print_target  # bench/target.py (scripts run from bench/ on sys.path)

from hil.guest.profiles import GuestOptions, get_profile
from hil.guest.profiles.reference import READY_MARKER
from hil.guest.stages import walk_stages
from hil.qemu.spec import MachineSpec, RunPaths
from hil.session import GuestSession


def hil_boot(run_dir: Path) -> tuple[float, MachineSpec, RunPaths]:
    started = time.monotonic()
    profile = get_profile("reference")
    session = GuestSession(profile, GuestOptions(accel="tcg"), run_dir)
    try:
        session.machine.launch()
        session.console.connect()
        session.machine.resume()
        walk_stages(session.console, profile.stages, session.machine.started_at or started)
        return time.monotonic() - started, session.machine.spec, session.machine.paths
    finally:
        session.close()


def raw_boot(spec: MachineSpec, hil_paths: RunPaths, scratch: Path) -> float:
    """The same spec's argv, minus -S (nobody resumes raw QEMU), with its own sockets."""
    paths = RunPaths(scratch / "qmp.sock", scratch / "serial.sock", scratch / "serial.log", initrd=hil_paths.initrd)
    argv = [arg for arg in spec.argv(paths) if arg != "-S"]
    started = time.monotonic()
    qemu = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return _wait_marker(paths.serial_socket, started)
    finally:
        qemu.kill()
        qemu.wait()


def _wait_marker(path: Path, started: float) -> float:
    while not path.exists():
        time.sleep(0.005)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(path))
    seen = b""
    while READY_MARKER.encode() not in seen:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("raw QEMU closed the serial socket before the marker")
        seen = seen[-64:] + data
    elapsed = time.monotonic() - started
    sock.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    hil_times, raw_times = [], []
    with tempfile.TemporaryDirectory(prefix="hil-bench-") as scratch:
        for index in range(args.pairs):
            seconds, spec, paths = hil_boot(Path(scratch) / f"hil-{index}")
            hil_times.append(seconds)
            raw_dir = Path(scratch) / f"raw-{index}"
            raw_dir.mkdir()
            raw_times.append(raw_boot(spec, paths, raw_dir))
            print(f"pair {index + 1}: hil {hil_times[-1]:.2f} s, raw {raw_times[-1]:.2f} s", flush=True)
    hil_median, raw_median = statistics.median(hil_times), statistics.median(raw_times)
    print(f"median boot to {READY_MARKER}: hil {hil_median:.2f} s, raw QEMU {raw_median:.2f} s")
    ratio = hil_median / raw_median
    print_target("boot_overhead", f"hil/raw {ratio:.3f}x", "<= 1.03x", ratio <= 1.03)


if __name__ == "__main__":
    main()
