"""Hang and crash triage on the real reference guest (QEMU, TCG).

One shared boot serves the step-level cases: a command that keeps sending heartbeats outlives its budget;
a kernel busy loop (dd zeroing 16 MiB buffers: the vCPU stays in the kernel's clear_user) is a livelock
named by that function; a shell spinning in user mode is a livelock in `[user]`; a read on a fifo nobody
writes leaves every vCPU halted (deadlock/idle). Two full `hil run`s check the report artifacts: init
blocked in a hook (a hang in stage ready) and a kernel panic in a step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hil.guest.profiles import GuestOptions, get_profile
from hil.runner import RunOptions, run_scenario
from hil.scenario import Step, load_scenario
from hil.session import GuestSession
from hil.steps import StepResult, run_step
from hil.triage.guest_symbols import warm_symbol_cache
from hil.triage.hang import HangPlace, HangReport, triage_hang
from tests.helpers import init_hook_overlay

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(reference_image, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("triage-session")
    with GuestSession(get_profile("reference"), GuestOptions(accel="tcg"), run_dir) as session:
        session.start()
        warm_symbol_cache(session)
        yield session


def _hang_step(session: GuestSession, command: str, budget: float = 3.0) -> tuple[StepResult, HangReport]:
    reports: list[HangReport] = []

    def on_hang(result: StepResult) -> None:
        reports.append(triage_hang(session, HangPlace("step", result.name)))

    step = Step(name=command[:20], kind="run", params={"run": command, "expect_status": 0, "expect_output": None},
                timeout=budget)  # fmt: skip
    result = run_step(session, step, on_hang=on_hang, recover=True)
    assert result.status == "hang" and len(reports) == 1, result.reason
    return result, reports[0]


def test_heartbeats_keep_a_long_command_alive(session: GuestSession) -> None:
    started = time.monotonic()
    command = 'for i in 1 2 3 4 5 6; do echo "# heartbeat slow_case $i"; sleep 1; done; echo finished'
    result = session.run(command, timeout=2.5)
    assert result.status == 0 and result.output.endswith("finished\n")
    assert time.monotonic() - started > 5  # twice the budget, and more


def test_kernel_busy_loop_is_a_livelock_named_by_its_function(session: GuestSession) -> None:
    result, report = _hang_step(session, "dd if=/dev/zero of=/dev/null bs=16M")
    assert report.classification.kind == "livelock", report.classification.explanation
    (function,) = report.classification.spinning
    assert "clear_user" in function  # the kernel zeroing dd's buffer: where the time goes
    assert report.signature == f"hang:livelock:{function}"
    assert report.symbols and "kallsyms" in report.symbols
    assert "no progress" in result.reason or "did not finish" in result.reason
    text = (session.run_dir / "hang-report.txt").read_text()
    assert f"spinning in {function}" in text and "HLT" in text  # the other vCPU idles
    assert session.run("echo alive").output == "alive\n"  # Ctrl-C ended dd: the shell is back


def test_user_mode_spin_is_a_livelock_in_user_space(session: GuestSession) -> None:
    _, report = _hang_step(session, "while :; do :; done")
    assert report.classification.kind == "livelock"
    assert report.classification.spinning == ["[user]"] and report.signature == "hang:livelock:[user]"
    spinning = next(c for c in report.classification.cpus if c.state == "spinning")
    assert all(s.registers.cpl == 3 for s in report.samples[spinning.cpu] if s.function == "[user]")


def test_waiting_on_a_fifo_nobody_writes_is_deadlock_idle(session: GuestSession) -> None:
    _, report = _hang_step(session, "rm -f /tmp/never; mkfifo /tmp/never; read x < /tmp/never")
    assert report.classification.kind == "deadlock/idle", report.classification.explanation
    assert report.signature.startswith("hang:deadlock/idle:step:")
    halted = [s for samples in report.samples.values() for s in samples if s.registers.halted]
    assert halted and all(s.location.startswith(("native_safe_halt", "default_idle")) for s in halted)
    saved = json.loads((session.run_dir / "hang-report.json").read_text())
    assert saved["classification"] == "deadlock/idle" and len(saved["cpus"]) == 2
    assert all(len(cpu["samples"]) == 10 for cpu in saved["cpus"])


def test_init_blocked_in_a_hook_is_a_hang_in_stage_ready(reference_image, tmp_path: Path) -> None:
    overlay = init_hook_overlay(tmp_path / "hook.cpio", "50-wait.sh", "mkfifo /tmp/gate; read go < /tmp/gate\n")
    options = RunOptions(accel="tcg", timeout_factor=0.2, report_dir=tmp_path / "run", extra_initrd=(overlay,))
    result = run_scenario(load_scenario("boot"), options)
    assert result.verdict == "hang", result.reason
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["signature"] == "hang:deadlock/idle:stage:ready"
    assert report["hang"]["stage"] == "ready" and report["hang"]["classification"] == "deadlock/idle"
    assert report["artifacts"]["hang_report"] == "hang-report.json"
    assert "every vCPU is halted" in (tmp_path / "run" / "hang-report.txt").read_text()


def test_kernel_panic_in_a_step_is_a_crash_with_a_signature(reference_image, tmp_path: Path) -> None:
    scenario = tmp_path / "panic.toml"
    scenario.write_text(
        'name = "panic"\ndescription = "sysrq crash"\n[[steps]]\nrun = "echo c > /proc/sysrq-trigger"\n'
    )
    options = RunOptions(accel="tcg", report_dir=tmp_path / "run")
    result = run_scenario(load_scenario(str(scenario)), options)
    assert result.verdict == "crash", result.reason
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["signature"] == "crash:Kernel panic - not syncing: sysrq triggered crash:sysrq_handle_crash"
    assert report["crash"]["process"] == "sh" and "sysrq_handle_crash" in report["crash"]["backtrace"]
    assert (tmp_path / "run" / "crash-report.txt").exists()
