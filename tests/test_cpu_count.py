"""CPUs, truthfully: a probe's `cpus` metric lands in report.json, short runs are flagged or failed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hil.errors import UsageError
from hil.guest.console import CommandResult
from hil.guest.profiles.reference import ReferenceProfile
from hil.judge import Judge
from hil.results import RunResult, StepResult, StepStatus, Verdict, cpus_brought_up
from hil.scenario import parse_scenario


def _step(cpus: int | None) -> StepResult:
    metrics = {} if cpus is None else {"cpus": {"value": float(cpus), "unit": "count", "raw": str(cpus)}}
    return StepResult("probe", "console_probe", StepStatus.PASS, cases=[{"name": "cpu_count", "metrics": metrics}])


def _judged(tmp_path: Path, smp: int, cpus: int | None, require: bool) -> RunResult:
    judge = Judge(RunResult("s", "redox-kernel", tmp_path), require_all_cpus=require)
    judge.session = SimpleNamespace(faults=[], machine=SimpleNamespace(spec=SimpleNamespace(smp=smp)))
    judge.result.steps.append(_step(cpus))
    judge.steps_finished(planned=1)
    return judge.result


def test_the_smallest_cpus_metric_is_the_count() -> None:
    assert cpus_brought_up([_step(4), _step(2)]) == 2
    assert cpus_brought_up([_step(None)]) is None


def test_fewer_cpus_than_given_is_flagged_but_passes_by_default(tmp_path: Path) -> None:
    result = _judged(tmp_path, smp=2, cpus=1, require=False)
    assert result.verdict == Verdict.PASS
    assert result.details["cpus"] == {"requested": 2, "online": 1, "short": True}


def test_a_scenario_requiring_all_cpus_fails_a_short_run(tmp_path: Path) -> None:
    result = _judged(tmp_path, smp=4, cpus=1, require=True)
    assert result.verdict == Verdict.FAIL and "brought up 1 of 4 CPUs" in result.reason
    assert result.details["signature"] == "fail:cpus"
    assert _judged(tmp_path, smp=2, cpus=2, require=True).verdict == Verdict.PASS


def test_without_a_count_nothing_is_claimed(tmp_path: Path) -> None:
    assert "cpus" not in _judged(tmp_path, smp=2, cpus=None, require=True).details


def test_require_all_cpus_is_a_machine_flag(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('guest = "redox-kernel"\n[machine]\nrequire_all_cpus = true\n[[steps]]\nrun = "true"\n')
    assert parse_scenario(path).require_all_cpus
    path.write_text('guest = "redox-kernel"\n[machine]\nrequire_all_cpus = "yes"\n[[steps]]\nrun = "true"\n')
    with pytest.raises(UsageError):
        parse_scenario(path)


def test_a_shell_count_stands_in_when_no_probe_counted(tmp_path: Path) -> None:
    judge = Judge(RunResult("s", "reference", tmp_path))
    judge.session = SimpleNamespace(faults=[], machine=SimpleNamespace(spec=SimpleNamespace(smp=2)))
    judge.cpus_from_shell = 2
    judge.result.steps.append(_step(None))
    judge.steps_finished(planned=1)
    assert judge.result.details["cpus"] == {"requested": 2, "online": 2, "short": False}


def test_the_reference_guest_counts_processors_in_proc_cpuinfo() -> None:
    class Shell:
        def __init__(self, output: str, status: int = 0) -> None:
            self.output, self.status = output, status

        def run(self, command: str, timeout: float) -> CommandResult:
            assert "/proc/cpuinfo" in command
            return CommandResult(command, self.status, self.output, 0.1)

    profile = ReferenceProfile()
    assert profile.cpus_online(Shell("4\n"), 5) == 4  # type: ignore[arg-type]
    assert profile.cpus_online(Shell("", 1), 5) is None  # type: ignore[arg-type]
