"""Why QEMU exited: the guest's own doing (panic, power-off, reset, isa-debug-exit) or infra (no QEMU)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hil.triage.collect import explain_exit

PANIC = "[    9.1] Kernel panic - not syncing: sysrq triggered crash\n[    9.1] CPU: 0 PID: 1 Comm: sh\n"


class Profile:
    crash_patterns = (r"Kernel panic - not syncing",)
    crash_format = "linux"
    debug_exit_verdicts = None


def _session(tmp_path: Path, serial: str = "", events: tuple[tuple[str, dict], ...] = (), profile: object = None):
    log = tmp_path / "serial.log"
    log.write_text(serial)
    qmp = SimpleNamespace(events=[SimpleNamespace(name=name, data=data) for name, data in events])
    machine = SimpleNamespace(qmp=qmp, paths=SimpleNamespace(serial_log=log), is_running=lambda: False,
                              spec=SimpleNamespace(kernel=None))  # fmt: skip
    console = SimpleNamespace(recent_lines=lambda count=40: [], inner=SimpleNamespace(drain=lambda seconds: None))
    return SimpleNamespace(machine=machine, profile=profile or Profile(), console=console, run_dir=tmp_path)


def test_guest_panicked_event_is_a_crash(tmp_path: Path) -> None:
    gone = explain_exit(_session(tmp_path, PANIC, (("GUEST_PANICKED", {"action": "poweroff"}),)), 0)
    assert gone.verdict == "crash" and "GUEST_PANICKED" in gone.reason
    assert gone.signature == "crash:Kernel panic - not syncing: sysrq triggered crash:kernel"  # no trace: the mode
    assert (tmp_path / "crash-report.json").exists()


def test_a_crash_on_the_console_without_the_event_is_a_crash(tmp_path: Path) -> None:
    gone = explain_exit(_session(tmp_path, PANIC, (("SHUTDOWN", {"guest": True, "reason": "guest-reset"}),)), 0)
    assert gone.verdict == "crash" and gone.crash is not None


def test_a_reset_without_crash_text_is_a_crash_of_unknown_kind(tmp_path: Path) -> None:
    gone = explain_exit(_session(tmp_path, "booting\n", (("SHUTDOWN", {"guest": True, "reason": "guest-reset"}),)), 0)
    assert gone.verdict == "crash" and gone.signature == "crash:guest-reset:unknown"


def test_the_guest_powering_off_is_its_own_failure_not_infra(tmp_path: Path) -> None:
    gone = explain_exit(_session(tmp_path, "", (("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"}),)), 0)
    assert gone.verdict == "fail" and "powered itself off" in gone.reason


@pytest.mark.parametrize(("status", "verdict"), [(51, "pass"), (53, "fail"), (7, "fail")])
def test_isa_debug_exit_statuses(tmp_path: Path, status: int, verdict: str) -> None:
    assert explain_exit(_session(tmp_path), status).verdict == verdict


def test_a_profile_can_name_its_own_debug_exit_verdicts(tmp_path: Path) -> None:
    profile = SimpleNamespace(crash_patterns=(), debug_exit_verdicts={3: "pass"}, crash_format="linux")
    assert explain_exit(_session(tmp_path, profile=profile), 3).verdict == "pass"


def test_anything_else_is_infra(tmp_path: Path) -> None:
    assert explain_exit(_session(tmp_path, "booting\n"), -9).verdict == "infra"
    assert explain_exit(_session(tmp_path, "booting\n"), None).verdict == "infra"
