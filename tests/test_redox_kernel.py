"""The redox-kernel guest on a real Redox kernel (needs real packages: HIL_REDOX_PKGS), and its pure parts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hil.guest.profiles.redox import IonShell
from hil.image.redox.initfs import build_initfs
from hil.runner import RunOptions, run_scenario
from hil.scenario import parse_scenario

PACKAGES = os.environ.get("HIL_REDOX_PKGS")
needs_packages = pytest.mark.skipif(
    not PACKAGES, reason="set HIL_REDOX_PKGS to a Redox package folder (kernel.pkgar, bootloader.pkgar, ...)"
)

WAIT_FOR_INITFS = """
name = "kernel-boot"
guest = "redox-kernel"
[[steps]]
name = "initfs runs"
console = "HIL-NEVER-PRINTED"
timeout = 10
"""


def test_ion_markers_cannot_match_the_echoed_line() -> None:
    wrapped = IonShell().wrap("ls /scheme")
    assert wrapped.pattern.search(wrapped.line + "\n") is None
    token = wrapped.pattern.pattern[2:14]
    match = wrapped.pattern.search(f"{wrapped.line}\nHB{token}\ndebug\nnull\nHE{token}:0\n")
    assert match is not None and match.group(1) == "debug\nnull" and match.group(2) == "0"


@needs_packages
@pytest.mark.qemu
def test_real_kernel_stages_then_a_faulting_initfs_is_a_crash(tmp_path: Path) -> None:
    (tmp_path / "ud2.initfs").write_bytes(build_initfs(b"\x0f\x0b"))
    (tmp_path / "kernel-boot.toml").write_text(WAIT_FOR_INITFS)
    options = RunOptions(accel="tcg", report_dir=tmp_path / "run", packages=PACKAGES, initfs=tmp_path / "ud2.initfs")
    result = run_scenario(parse_scenario(tmp_path / "kernel-boot.toml"), options)
    report = json.loads((result.run_dir / "report.json").read_text())
    assert [s["name"] for s in report["stages"]] == ["kernel", "start", "memory", "devices", "env", "userspace"]
    assert all(s["status"] == "reached" for s in report["stages"]), report["stages"]
    assert report["verdict"] == "crash", report["reason"]
    assert "UNHANDLED EXCEPTION, CPU #0" in report["crash"]["line"]
    dump = "\n".join(report["crash"]["last_lines"])
    assert "Invalid opcode fault" in dump and "invalid_opcode" in dump


@needs_packages
@pytest.mark.qemu
def test_kernel_smoke_reports_every_probe_case_from_inside_the_guest(tmp_path: Path) -> None:
    from hil.scenario import load_scenario

    options = RunOptions(accel="tcg", report_dir=tmp_path, packages=PACKAGES)
    result = run_scenario(load_scenario("kernel-smoke"), options)
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["verdict"] == "pass", report["reason"]
    cases = {case["name"]: case for case in report["steps"][0]["cases"]}
    for name in ("syscall_path", "nanosleep", "sched_yield", "futex_wake", "mmap_anon", "thread_spawn",
                 "scheme_create", "scheme_out_of_order", "sched_stress"):  # fmt: skip
        assert cases[name]["status"] == "pass", cases[name]
    known = [name for name, case in cases.items() if case["allowed_failure"]]
    assert set(known) <= {"futex_wake_timeout", "futex_timeout_cleanup"}
