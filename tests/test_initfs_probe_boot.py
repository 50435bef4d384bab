"""The initfs probe on a real Redox kernel under QEMU (TCG).

Needs real Redox packages: point HIL_REDOX_PKGS at a package folder (kernel.pkgar, bootloader.pkgar, ...,
e.g. the x86_64-unknown-redox folder of a public package build); without it these tests skip. Each test
assembles an image with the real kernel and bootloader and the probe as its initfs, boots it, and parses what
the probe reported. A case may fail only when the ABI table lists it as a known issue of those kernels.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from hil.image.redox.assemble import assemble
from hil.initfs_probe import regdump, spec
from hil.initfs_probe.abi import ABIS, DEFAULT_ABI
from hil.initfs_probe.build import build_initfs_probe
from hil.probes.ktap import ProbeReport, parse_text

PACKAGES = os.environ.get("HIL_REDOX_PKGS")
QEMU = shutil.which("qemu-system-x86_64")
BOOT_TIMEOUT_S = 180
EXIT_PASS, EXIT_FAIL = 51, 53  # isa-debug-exit: (25 << 1) | 1 and (26 << 1) | 1, as redoxer

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.slow,
    pytest.mark.skipif(
        not PACKAGES, reason="set HIL_REDOX_PKGS to a Redox package folder (kernel.pkgar, bootloader.pkgar, ...)"
    ),
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 is not installed"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
]


def boot(tmp_path: Path, until: str | None = None, smp: int = 2, **build_options: object) -> tuple[int | None, str]:
    """(QEMU exit status or None when stopped, serial text) of one boot with the probe as initfs.

    QEMU ends on its own through isa-debug-exit on the console channel; with `until`, it is stopped once a
    console line matches it (the register-dump channel ends in a fault, after which the kernel idles).
    """
    initfs = build_initfs_probe(tmp_path / "probe", **build_options)  # type: ignore[arg-type]
    image = tmp_path / "redox.img"
    assemble(packages=PACKAGES, out=image, size=64 << 20, initfs=initfs)
    argv = [
        QEMU, "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", str(smp), "-m", "2048",
        "-nodefaults", "-display", "none", "-vga", "none", "-serial", "stdio", "-device", "isa-debug-exit",
        "-drive", f"file={image},format=raw", "-no-reboot",
    ]  # fmt: skip
    lines: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as qemu:
        timer = threading.Timer(BOOT_TIMEOUT_S, qemu.kill)
        timer.start()
        try:
            for raw in qemu.stdout or ():
                lines.append(raw.decode("utf-8", "replace"))
                if until and re.search(until, lines[-1]):
                    qemu.kill()
        finally:
            timer.cancel()
            status = qemu.wait()
    console = "".join(lines)
    (tmp_path / "serial.log").write_text(console)
    return (None if status < 0 else status), console


def check_report(report: ProbeReport, console: str) -> None:
    known = ABIS[DEFAULT_ABI].known_issues
    assert report.errors == [], f"{report.errors}\n{console[-3000:]}"
    assert [case.name for case in report.cases] == list(spec.CASES)
    unexpected = [
        f"{c.name}: {c.reason}" for c in report.cases if c.status not in ("pass", "skip") and c.name not in known
    ]
    assert not unexpected, f"cases failed that are no known issue of {DEFAULT_ABI}: {unexpected}"
    skipped = [f"{c.name}: {c.reason}" for c in report.cases if c.status == "skip"]
    assert not skipped, f"the bootstrap context allowed every case on this kernel before: {skipped}"


def test_kernel_smoke_cases_pass_on_a_real_kernel(tmp_path: Path) -> None:
    status, console = boot(tmp_path)
    report = parse_text(console)
    check_report(report, console)
    assert report.probe is not None and report.probe.program == spec.PROGRAM
    failed = [case.name for case in report.cases if case.status == "fail"]
    assert status == (EXIT_FAIL if failed else EXIT_PASS), "the verdict reaches QEMU through isa-debug-exit"
    assert report.case("scheme_out_of_order").metrics["ooo_completions"].value == 7
    beats = [int(n) for n in re.findall(r"^# heartbeat sched_stress (\d+)", console, re.MULTILINE)]
    assert len(beats) == spec.VARIANTS["kernel-smoke"].beats and beats == sorted(beats) and beats[0] > 0
    assert "Invalid opcode" not in console and "UNHANDLED EXCEPTION" not in console


def test_register_dump_channel_carries_the_same_verdicts(tmp_path: Path) -> None:
    _status, console = boot(
        tmp_path, until="UNHANDLED EXCEPTION", smp=4, channel="regdump", stress_seconds=1, stress_threads=4
    )
    assert "KTAP version 1" not in console, "nothing is printed on this channel"
    text = regdump.ktap_from_console(console)
    assert text is not None, f"no register dump with the probe's magic:\n{console[-3000:]}"
    check_report(parse_text(text), console)
