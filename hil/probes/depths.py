"""What each probe's depth_D cases measure: the same metric names, but not the same I/O path.

A side-by-side of two probes' depth cases says this next to the numbers, so unlike things are not read as
like. Keyed by the program name of the probe's `# probe PROGRAM VERSION OS` line.
"""

from __future__ import annotations

DEPTH_PATHS: dict[str, str] = {
    "hil-uring-probe": (
        "io_uring: one thread keeps D O_DIRECT 4 KiB reads in flight on the block device; the guest kernel's "
        "NVMe driver, its block layer and interrupt-driven completions; latency = submit to completion seen"
    ),
    "hil-initfs-probe": (
        "a user scheme: D contexts each block in read() on it; the kernel forwards each as a 64-byte Sqe to a "
        "server context that submits an NVMe read into the caller's buffer, a second server context polls the "
        "completion queue and answers; no block layer; latency = read() call to return"
    ),
}
UNKNOWN_PATH = "not described by this hil (see the probe's own documentation)"


def depth_path(program: str | None) -> str:
    return DEPTH_PATHS.get(program or "", UNKNOWN_PATH)
