"""`hil run` end to end with real QEMU: pass, hang, crash and infra verdicts, and their report.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import init_hook_overlay, process_gone

pytestmark = pytest.mark.qemu


def hil(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], capture_output=True, text=True, timeout=timeout)


def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


def test_run_boot_passes_with_a_stage_timeline(tmp_path: Path, reference_image) -> None:
    done = hil("run", "boot", "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    data = report(tmp_path)
    assert data["verdict"] == "pass"
    assert [s["name"] for s in data["stages"]] == ["kernel", "userspace", "mounts", "drivers", "network", "sshd",
                                                   "ready"]  # fmt: skip
    assert all(s["status"] == "reached" and s["seconds"] > 0 for s in data["stages"])
    assert [s["status"] for s in data["steps"]] == ["pass", "pass", "pass"]
    assert data["accel"] in ("tcg", "kvm") and "accelerator:" in done.stdout
    for name in ("serial_log", "qmp_log", "argv", "console_transcript", "scenario"):
        assert (tmp_path / data["artifacts"][name]).is_file(), name


def test_a_guest_that_never_gets_ready_is_a_hang_in_that_stage(tmp_path: Path, reference_image) -> None:
    overlay = init_hook_overlay(tmp_path / "hang.cpio", "50-hang.sh", "echo hook: waiting forever\nsleep 100000\n")
    run_dir = tmp_path / "run"
    done = hil("run", "boot", "--initrd-overlay", str(overlay), "--timeout-factor", "0.3", "--report-dir", str(run_dir))
    assert done.returncode == 1, done.stdout + done.stderr
    data = report(run_dir)
    assert data["verdict"] == "hang"
    assert data["hang"]["stage"] == "ready"
    assert "hook: waiting forever" in data["hang"]["last_lines"]
    assert [s["status"] for s in data["stages"]][-2:] == ["reached", "stuck"]
    assert b"hook: waiting forever" in (run_dir / "serial.log").read_bytes()


def test_a_kernel_panic_is_a_crash(tmp_path: Path, reference_image) -> None:
    overlay = init_hook_overlay(tmp_path / "panic.cpio", "50-panic.sh", "echo c > /proc/sysrq-trigger\n")
    done = hil("run", "boot", "--initrd-overlay", str(overlay), "--report-dir", str(tmp_path / "run"))
    assert done.returncode == 1, done.stdout + done.stderr
    data = report(tmp_path / "run")
    assert data["verdict"] == "crash"
    assert "Kernel panic" in data["crash"]["line"] or "sysrq" in " ".join(data["crash"]["last_lines"]).lower()


def test_missing_qemu_is_infra_with_a_readable_message(tmp_path: Path, reference_image) -> None:
    done = hil("run", "boot", "--accel", "tcg", "--qemu", "/nonexistent/qemu", "--report-dir", str(tmp_path))
    assert done.returncode == 3
    assert "not found" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert report(tmp_path)["verdict"] == "infra"


def test_an_option_qemu_rejects_is_infra_with_its_words(tmp_path: Path, reference_image) -> None:
    # 100 TB of guest memory: a valid option the host cannot give (hil refuses what it can check itself,
    # such as --smp 100000, as a usage error before QEMU starts).
    done = hil("run", "boot", "--accel", "tcg", "--memory", "100000000", "--report-dir", str(tmp_path))
    assert done.returncode == 3
    data = report(tmp_path)
    assert data["verdict"] == "infra"
    assert "-m 100000000" in data["reason"] and "QEMU said:" in data["reason"] and "memory" in data["reason"]
    assert "Traceback" not in done.stdout + done.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert hil("run", "no-such-scenario").returncode == 2
    assert hil("run", "boot", "--smp", "zero").returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("[machine]\ncpus = 2\n")
    done = hil("run", str(bad))
    assert done.returncode == 2 and "machine.cpus" in done.stdout and "Traceback" not in done.stdout + done.stderr


def test_keep_leaves_the_vm_for_console_and_stop(tmp_path: Path, reference_image) -> None:
    done = hil("run", "boot", "--keep", "--report-dir", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    pid = report(tmp_path)["kept"]["pid"]
    sockets = Path(report(tmp_path)["kept"]["qmp_socket"]).parent
    try:
        assert Path(f"/proc/{pid}").exists(), "the kept VM is not running"
        assert str(tmp_path) in hil("console", "--list").stdout
        assert sockets.is_dir(), "a kept VM's sockets must outlive the hil run that started it"
        stopped = hil("console", "--stop", str(tmp_path))
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert process_gone(pid)
        assert not sockets.exists(), "console --stop leaves the VM's socket folder behind"
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def test_doctor_reports_qemu_the_accelerator_and_the_caches(reference_image) -> None:
    done = hil("doctor")
    assert done.returncode == 0, done.stdout
    for label in ("QEMU", "accelerator", "reference guest", "cache folder", "snapshots"):
        assert label in done.stdout
    assert "TCG" in done.stdout or "KVM" in done.stdout
