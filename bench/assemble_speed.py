"""Time `hil image assemble` for a 256 MiB image (target < 1 s in total).

The packages are synthetic stand-ins of the real ones' sizes: a ~4 MiB kernel, a ~2 MiB initfs and the
bootloader (384 KiB BIOS loader + 170 KiB UEFI loader), in a signed package folder. Each run writes a fresh
image; the script prints every phase of the best and the median run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from target import print_target  # bench/target.py (scripts run from bench/ on sys.path)

from hil.image.redox.assemble import assemble
from hil.image.redox.synthetic import standard_packages, write_repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--kernel-mib", type=float, default=4)
    parser.add_argument("--initfs-mib", type=float, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hil-assemble-bench-") as scratch:
        repo = Path(scratch) / "packages"
        write_repo(repo, standard_packages(int(args.kernel_mib * 2**20), int(args.initfs_mib * 2**20)))
        results = [assemble(repo, Path(scratch) / "redox.img", size=args.size_mib << 20) for _ in range(args.runs)]
    totals = sorted(result.timings["total"] for result in results)
    best = min(results, key=lambda result: result.timings["total"])
    print(f"image {args.size_mib} MiB, kernel {args.kernel_mib} MiB, initfs {args.initfs_mib} MiB, {args.runs} runs")
    print("best run: " + ", ".join(f"{phase} {seconds * 1000:.0f} ms" for phase, seconds in best.timings.items()))
    print(f"total: best {totals[0]:.3f} s, median {statistics.median(totals):.3f} s")
    median = statistics.median(totals)
    print_target("assemble_speed", f"median {median:.3f} s", "< 1 s", median < 1.0)


if __name__ == "__main__":
    main()
