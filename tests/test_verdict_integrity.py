"""A verdict is computed from what happened, never preset: signals, QEMU dying and a step in flight.

Real `hil run` processes on the reference guest are stopped the way CI stops them (SIGTERM when a job is
cancelled, SIGHUP when its terminal goes), at boot and in the middle of a step, alone and in a run set.
None of them may say pass; each says what stopped it and which step it cut short.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from hil.judge import InFlight, Judge
from hil.results import RunResult, StepResult, StepStatus, Terminated, Verdict
from tests.helpers import process_gone

SLEEPER = """
name = "sleeper"
guest = "reference"
[machine]
snapshot = true
[[steps]]
name = "quick"
run = "true"
[[steps]]
name = "sleeping"
run = "echo SLEEPER-$((40+2))-STARTED; sleep 600"
timeout = 900
[[steps]]
name = "never reached"
run = "true"
"""
STARTED = b"SLEEPER-42-STARTED"  # the echo of the typed line shows the unexpanded $((40+2))


# --- the judge alone (pure logic) ------------------------------------------------------------------------


def _result(tmp_path: Path) -> RunResult:
    return RunResult("s", "reference", tmp_path)


def test_a_run_starts_as_infra_not_pass(tmp_path: Path) -> None:
    result = _result(tmp_path)
    assert result.verdict == Verdict.INFRA and result.reason


def test_a_signal_interrupts_the_step_in_flight(tmp_path: Path) -> None:
    judge = Judge(_result(tmp_path))
    judge.session = SimpleNamespace(faults=[])
    judge.result.timeline = object()
    judge.in_flight = InFlight("sleeping", "run", time.monotonic())
    judge.ended_by(Terminated(signal.SIGTERM))
    assert judge.result.verdict == Verdict.INFRA
    assert judge.result.reason == "terminated by SIGTERM during step 'sleeping'"
    [step] = judge.result.steps
    assert (step.name, step.status, step.reason) == ("sleeping", StepStatus.INTERRUPTED, "terminated by SIGTERM")


def test_each_error_is_judged_once_and_a_later_stop_only_adds_to_the_reason(tmp_path: Path) -> None:
    judge = Judge(_result(tmp_path))
    error = RuntimeError("boom")
    judge.ended_by(error)
    judge.ended_by(error)
    assert judge.result.reason == "internal error: RuntimeError('boom')"
    assert (tmp_path / "hil-traceback.txt").is_file()
    judge.ended_by(KeyboardInterrupt())
    assert judge.result.verdict == Verdict.INFRA
    assert judge.result.reason.endswith("; then interrupted by Ctrl-C (SIGINT)")


@pytest.mark.parametrize(
    ("statuses", "planned", "verdict"),
    [
        ([StepStatus.PASS, StepStatus.PASS], 2, Verdict.PASS),
        ([StepStatus.PASS, StepStatus.FAIL, StepStatus.PASS], 3, Verdict.FAIL),
        ([StepStatus.PASS], 2, Verdict.INFRA),  # a step that never ran is no pass
        ([StepStatus.PASS, StepStatus.INTERRUPTED], 2, Verdict.INFRA),
        ([], 0, Verdict.PASS),
    ],
)
def test_the_verdict_follows_from_the_steps(
    tmp_path: Path, statuses: list[StepStatus], planned: int, verdict: Verdict
) -> None:
    judge = Judge(_result(tmp_path))
    judge.result.steps = [StepResult(f"s{i}", "run", status, reason="why") for i, status in enumerate(statuses)]
    judge.steps_finished(planned)
    assert judge.result.verdict == verdict and judge.result.reason


# --- real runs, stopped from outside ---------------------------------------------------------------------


def _hil(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hil.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "120"},
    )


def _wait_for(path: Path, data: bytes, process: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and data in path.read_bytes():
            return
        assert process.poll() is None, f"hil ended early: {process.communicate()[0]}"
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"{data!r} never showed in {path}")


def _qemu_pids(run_dir: Path) -> list[int]:
    found = subprocess.run(["pgrep", "-f", f"qemu-system.*{run_dir}"], capture_output=True, text=True).stdout
    return [int(pid) for pid in found.split()]


@pytest.fixture(scope="module")
def sleeper(tmp_path_factory: pytest.TempPathFactory, reference_image) -> Path:
    path = tmp_path_factory.mktemp("sleeper") / "sleeper.toml"
    path.write_text(SLEEPER)
    return path


@pytest.mark.qemu
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_during_a_step_is_infra_with_the_step_interrupted(sleeper: Path, tmp_path: Path, sig) -> None:
    run_dir = tmp_path / "run"
    hil = _hil("run", str(sleeper), "--report-dir", str(run_dir))
    _wait_for(run_dir / "serial.log", STARTED, hil)
    qemu = _qemu_pids(run_dir)
    hil.send_signal(sig)
    printed = hil.communicate(timeout=90)[0]
    name = signal.Signals(sig).name
    assert hil.returncode == 128 + sig, printed
    report = json.loads((run_dir / "report.json").read_text())
    assert report["verdict"] == "infra"
    assert report["reason"] == f"terminated by {name} during step 'sleeping'"
    assert [(s["name"], s["status"]) for s in report["steps"]] == [("quick", "pass"), ("sleeping", "interrupted")]
    assert f"terminated by {name}" in printed and "report:" in printed
    assert qemu and all(process_gone(pid) for pid in qemu)


@pytest.mark.qemu
def test_a_signal_while_booting_is_infra_with_a_reason(sleeper: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    hil = _hil("run", str(sleeper), "--no-snapshot", "--report-dir", str(run_dir))
    _wait_for(run_dir / "serial.log", b"Linux version", hil)
    hil.send_signal(signal.SIGTERM)
    printed = hil.communicate(timeout=90)[0]
    assert hil.returncode == 143, printed
    report = json.loads((run_dir / "report.json").read_text())
    assert (report["verdict"], report["reason"]) == ("infra", "terminated by SIGTERM while the guest booted")
    assert report["steps"] == []


@pytest.mark.qemu
def test_a_run_set_stopped_by_sigterm_is_never_green(sleeper: Path, tmp_path: Path) -> None:
    root, junit = tmp_path / "set", tmp_path / "junit.xml"
    hil = _hil("run", str(sleeper), "--repeat", "2", "-j", "1", "--report-dir", str(root), "--junit", str(junit))
    _wait_for(root / "runs" / "sleeper-r1" / "try1" / "serial.log", STARTED, hil)
    hil.send_signal(signal.SIGTERM)
    printed = hil.communicate(timeout=120)[0]
    assert hil.returncode == 143, printed
    runset = json.loads((root / "runset.json").read_text())
    assert runset["verdict"] == "infra" and runset["stopped"] == "terminated by SIGTERM"
    first, second = runset["cells"]
    assert (first["verdict"], first["reason"]) == ("infra", "terminated by SIGTERM during step 'sleeping'")
    assert [s["status"] for s in first["report"]["steps"]] == ["pass", "interrupted"]
    assert (second["verdict"], second["reason"]) == ("infra", "never started: the run set was terminated by SIGTERM")
    cases = ET.parse(junit).getroot().iter("testcase")
    assert all(case.find("error") is not None for case in cases)
    assert "stopped early" in printed


@pytest.mark.qemu
def test_qemu_killed_during_a_step_is_infra_and_the_step_is_kept(sleeper: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    hil = _hil("run", str(sleeper), "--report-dir", str(run_dir))
    _wait_for(run_dir / "serial.log", STARTED, hil)
    for pid in _qemu_pids(run_dir):
        os.kill(pid, signal.SIGKILL)
    printed = hil.communicate(timeout=90)[0]
    assert hil.returncode == 3, printed
    report = json.loads((run_dir / "report.json").read_text())
    assert report["verdict"] == "infra"
    assert "QEMU exit status -9" in report["reason"] and not report["reason"].rstrip().endswith(":")
    assert [(s["name"], s["status"]) for s in report["steps"]] == [("quick", "pass"), ("sleeping", "interrupted")]
