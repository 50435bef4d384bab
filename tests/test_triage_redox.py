"""Triage on a real Redox kernel (QEMU, TCG): its exception dump becomes a crash report, a spinning bootstrap
a livelock in user space. Needs real packages: set HIL_REDOX_PKGS (see /work/shared/redox.md)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from hil.image.redox.initfs import build_initfs
from hil.initfs_probe.layout import initfs_from_elf
from hil.runner import RunOptions, run_scenario
from hil.scenario import load_scenario

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(not os.environ.get("HIL_REDOX_PKGS"), reason="HIL_REDOX_PKGS is not set (real Redox packages)"),
]

JUMP_TO_SELF = b"\xeb\xfe"  # jmp $: the bootstrap spins in user mode forever, printing nothing


@pytest.fixture
def kernel_symbols(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The kernel ELF from the packages (in the test's temp folder only), named as the profile would."""
    from hil.guest.profiles.redox import RedoxKernelProfile
    from hil.image.redox.pkgar import read_package

    folder = Path(os.environ["HIL_REDOX_PKGS"])
    if not (folder / "kernel.pkgar").is_file():
        pytest.skip("HIL_REDOX_PKGS is not a local package folder with kernel.pkgar")
    package = read_package(folder / "kernel.pkgar")
    elf = tmp_path / "kernel.elf"
    elf.write_bytes(next(package.read(e) for e in package.entries if e.path == "boot/kernel"))
    if not hasattr(RedoxKernelProfile, "kernel_symbols"):
        monkeypatch.setattr(RedoxKernelProfile, "kernel_symbols", lambda self, options: elf, raising=False)
    return elf


def _run(tmp_path: Path, code: bytes | None) -> dict:
    initfs = tmp_path / "initfs"
    initfs.write_bytes(build_initfs(code) if code else build_initfs())
    options = RunOptions(guest="redox-kernel", packages=os.environ["HIL_REDOX_PKGS"], initfs=initfs,
                         accel="tcg", timeout_factor=0.2, report_dir=tmp_path / "run")  # fmt: skip
    run_scenario(load_scenario("kernel-smoke"), options)
    return json.loads((tmp_path / "run" / "report.json").read_text())


def test_an_invalid_opcode_in_the_bootstrap_is_a_crash_with_the_kernel_dump(tmp_path: Path) -> None:
    report = _run(tmp_path, None)  # the default initfs entry is ud2
    assert report["verdict"] == "crash", report["reason"]
    assert report["signature"] == "crash:Invalid opcode fault:user:bootstrap"
    crash = report["crash"]
    assert crash["registers"]["RIP"] == "0000000000001100" and crash["process"] == "bootstrap"
    assert crash["summary"] == "Invalid opcode fault in bootstrap at 0x1100" and crash["program"] == "[bootstrap]"
    assert any("invalid_opcode" in frame for frame in crash["backtrace"])


def test_a_spinning_bootstrap_is_a_livelock_in_user_space(tmp_path: Path, kernel_symbols: Path) -> None:
    report = _run(tmp_path, JUMP_TO_SELF)
    assert report["verdict"] == "hang", report["reason"]
    assert report["signature"] == "hang:livelock:[user]"
    assert "elf:" in report["hang"]["symbols"]
    spinning = [cpu for cpu in report["hang"]["cpus"] if cpu["state"] == "spinning"]
    samples = spinning[0]["samples"]
    assert all(s["rip"] == "0x1100" for s in samples if s["cpl"] == 3)
    # Kernel-mode samples, if any, are named from the kernel's own symbol table (its timer interrupt entry).
    assert all(s["at"].startswith("kernel::") for s in samples if s["cpl"] == 0)


YIELD_LOOP = b"\xb8\x9e\x00\x00\x00\x0f\x05\xeb\xf7"  # mov eax, SYS_YIELD (158); syscall; jmp back


def test_a_bootstrap_yielding_in_a_loop_is_a_user_loop_not_a_kernel_livelock(
    tmp_path: Path, kernel_symbols: Path
) -> None:
    report = _run(tmp_path, YIELD_LOOP)
    assert report["verdict"] == "hang", report["reason"]
    assert report["hang"]["classification"] == "user-loop", report["hang"]["explanation"]
    assert report["signature"].startswith("hang:user-loop:")
    assert "re-entering the kernel" in report["reason"]


WRITE_THROUGH_NULL = """
    .section .text.entry, "ax"
    .globl _start
_start:
    jmp write_through_null
    .text
    .globl write_through_null
    .type write_through_null, @function
write_through_null:
    movb $1, 0
    .size write_through_null, . - write_through_null
"""


def test_a_user_fault_is_named_by_its_function_from_the_programs_elf(tmp_path: Path) -> None:
    """The issue's own example: a bootstrap that writes through a null pointer, with its ELF beside the
    initfs as hil's probe keeps its own."""
    source, elf = tmp_path / "null.S", tmp_path / "null.elf"
    source.write_text(WRITE_THROUGH_NULL)
    script = Path(__file__).resolve().parent.parent / "hil" / "initfs_probe" / "src" / "initfs.ld"
    subprocess.run(["gcc", "-nostdlib", "-static", "-no-pie", "-T", str(script), "-o", str(elf), str(source)],
                   check=True, capture_output=True)  # fmt: skip
    initfs = tmp_path / "null.initfs"
    initfs.write_bytes(initfs_from_elf(elf.read_bytes()))
    options = RunOptions(guest="redox-kernel", packages=os.environ["HIL_REDOX_PKGS"], initfs=initfs,
                         accel="tcg", timeout_factor=0.2, report_dir=tmp_path / "run")  # fmt: skip
    run_scenario(load_scenario("kernel-smoke"), options)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["verdict"] == "crash", report["reason"]
    crash = report["crash"]
    assert crash["symbol"] == "write_through_null"
    assert crash["summary"].startswith("Page fault (write to 0x0) in bootstrap at 0x20")
    assert crash["summary"].endswith(" write_through_null")
    assert report["signature"] == "crash:Page fault:user:bootstrap:write_through_null"
