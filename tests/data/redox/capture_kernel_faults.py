"""Regenerate the kernel-fault logs of this corpus from a real Redox kernel (not run by the tests).

Each case is a few bytes of x86-64 machine code that hil puts in an initfs as the bootstrap's entry point
(hil.image.redox.initfs.build_initfs); the real kernel from HIL_REDOX_PKGS runs it in ring 3, faults, and
prints its exception dump on the serial port. This script boots each one with `hil run kernel-smoke
--initfs` and saves the serial log as `kernel-<case>.log`; the sidecars (.toml) were written by hand from
what the logs show.

    HIL_REDOX_PKGS=/path/to/x86_64-unknown-redox python tests/data/redox/capture_kernel_faults.py
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hil.image.redox.initfs import build_initfs

HERE = Path(__file__).resolve().parent
# case -> (machine code run in user mode at the bootstrap's entry point, what it does)
CASES = {
    "invalid-opcode": (b"\x0f\x0b", "ud2"),
    "divide-by-zero": (b"\x31\xc0\x31\xd2\xf7\xf0", "xor eax,eax; xor edx,edx; div eax"),
    "breakpoint": (b"\xcc", "int3"),
    "protection-fault": (b"\xf4", "hlt in ring 3"),
    "page-fault-null-write": (b"\xc6\x04\x25\x00\x00\x00\x00\x01", "mov byte [0], 1"),
    "page-fault-read": (b"\x8a\x04\x25\x10\x00\x00\x00", "mov al, [0x10]"),
    "page-fault-exec": (b"\x48\xb8\x00\x00\xad\xde\x00\x00\x00\x00\xff\xe0", "mov rax, 0xdead0000; jmp rax"),
}  # fmt: skip


def capture(case: str, code: bytes, packages: str, scratch: Path) -> Path:
    initfs = scratch / f"{case}.initfs"
    initfs.write_bytes(build_initfs(code))
    run_dir = scratch / case
    argv = [sys.executable, "-m", "hil.cli", "run", "kernel-smoke", "--accel", "tcg", "--packages", packages,
            "--initfs", str(initfs), "--timeout-factor", "0.5", "--report-dir", str(run_dir)]  # fmt: skip
    subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    target = HERE / f"kernel-{case}.log"
    shutil.copyfile(run_dir / "serial.log", target)
    return target


def main() -> None:
    packages = os.environ["HIL_REDOX_PKGS"]
    with tempfile.TemporaryDirectory() as folder:
        for case, (code, what) in CASES.items():
            print(f"{case}: {what} -> {capture(case, code, packages, Path(folder))}")


if __name__ == "__main__":
    main()
