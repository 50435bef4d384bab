"""Run sets without QEMU: a stand-in `hil` writes report.json with scripted verdicts, so parallelism, infra
retries, exit codes, suites and the command line can be checked in seconds."""

from __future__ import annotations

import argparse
import json
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console as Terminal

from hil.cli_run import plan_from_args, run_parser, runset_requested
from hil.errors import UsageError
from hil.reports.live import live_progress
from hil.results import RUNSET_NAME, Cell
from hil.runset import (
    RunSetPlan,
    RunSetRunner,
    expand_cells,
    load_suite,
    run_plan,
    suite_names,
)

# Stands in for `hil`: `run SCENARIO --report-dir DIR [options]`. The verdict of each try comes from
# FAKE_VERDICTS ({scenario name: [verdict of try 1, try 2, ...]}); "noreport" exits without a report.
FAKE_HIL = """
import json, os, sys, time
from pathlib import Path
args = sys.argv[1:]
assert args[0] == "run", args
scenario = Path(args[1]).stem
report_dir = Path(args[args.index("--report-dir") + 1])
attempt = int(report_dir.name.removeprefix("try"))
plan = json.loads(os.environ["FAKE_VERDICTS"]).get(scenario, ["pass"])
verdict = plan[min(attempt, len(plan)) - 1]
log = Path(os.environ["FAKE_LOG"])
with open(log, "a") as f:
    f.write(json.dumps({"event": "start", "at": time.monotonic(), "argv": args}) + "\\n")
print(f"stage kernel 0.5 s reached", flush=True)
time.sleep(float(os.environ.get("FAKE_SECONDS", "0.3")))
with open(log, "a") as f:
    f.write(json.dumps({"event": "end", "at": time.monotonic()}) + "\\n")
if verdict == "noreport":
    print("Traceback: something broke", flush=True)
    sys.exit(1)
report = {"scenario": scenario, "verdict": verdict, "reason": f"{verdict} on try {attempt}", "stages": [],
          "steps": [], "duration_s": 0.3, "started": "2026-01-02T03:04:05+0000"}
(report_dir / "report.json").write_text(json.dumps(report))
sys.exit({"pass": 0, "infra": 3}.get(verdict, 1))
"""


@pytest.fixture
def fake_hil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path]:
    script = tmp_path / "fake_hil.py"
    script.write_text(FAKE_HIL)
    log = tmp_path / "fake.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_VERDICTS", "{}")
    return [sys.executable, str(script)], log


def scenarios(tmp_path: Path, *names: str) -> list[str]:
    """Minimal scenario files: a name and one step."""
    paths = []
    for name in names:
        path = tmp_path / f"{name}.toml"
        path.write_text(f'name = "{name}"\n[[steps]]\nrun = "true"\n')
        paths.append(str(path))
    return paths


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def most_at_once(log: Path) -> int:
    running = peak = 0
    for event in sorted(events(log), key=lambda e: e["at"]):
        running += 1 if event["event"] == "start" else -1
        peak = max(peak, running)
    return peak


def test_cells_run_in_parallel_up_to_jobs_and_all_pass(tmp_path: Path, fake_hil: tuple[list[str], Path]) -> None:
    command, log = fake_hil
    cells = expand_cells(scenarios(tmp_path, "alpha", "beta"), [1, 2], repeat=2)
    assert [c.id for c in cells][:4] == ["alpha-smp1-r1", "alpha-smp1-r2", "alpha-smp2-r1", "alpha-smp2-r2"]
    result = run_plan(RunSetPlan("par", tuple(cells), jobs=3), tmp_path / "set", command)
    assert most_at_once(log) == 3  # parallel, and never more than jobs at once
    assert result.exit_code == 0 and result.counts["pass"] == 8
    data = json.loads((tmp_path / "set" / RUNSET_NAME).read_text())
    assert [cell["report_dir"] for cell in data["cells"]][:2] == ["runs/alpha-smp1-r1/try1", "runs/alpha-smp1-r2/try1"]
    assert all(cell["report"]["verdict"] == "pass" for cell in data["cells"])
    smp_args = sorted(e["argv"][e["argv"].index("--smp") + 1] for e in events(log) if e["event"] == "start")
    assert smp_args == ["1"] * 4 + ["2"] * 4
    assert (tmp_path / "set/runs/beta-smp2-r2/try1/hil-run.log").read_text().count("stage kernel") == 1


def test_infra_is_retried_and_kernel_failures_never_are(
    tmp_path: Path, fake_hil: tuple[list[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    command, _ = fake_hil
    plan = {"flaky": ["infra", "pass"], "broken": ["noreport", "infra", "infra"], "hangs": ["hang", "pass"]}
    monkeypatch.setenv("FAKE_VERDICTS", json.dumps(plan))
    cells = expand_cells(scenarios(tmp_path, "flaky", "broken", "hangs"))
    result = run_plan(RunSetPlan("retry", tuple(cells), jobs=2, retry_infra=2), tmp_path / "set", command)
    by_name = {cell.cell.label: cell for cell in result.cells}
    assert [a.verdict for a in by_name["flaky"].attempts] == ["infra", "pass"]
    assert [a.verdict for a in by_name["broken"].attempts] == ["infra", "infra", "infra"]
    assert "without a report" in by_name["broken"].attempts[0].reason
    assert "Traceback: something broke" in by_name["broken"].attempts[0].reason
    assert [a.verdict for a in by_name["hangs"].attempts] == ["hang"]
    assert result.exit_code == 1  # a hang outweighs the infra error


def test_only_infra_left_exits_3(tmp_path: Path, fake_hil: tuple[list[str], Path], monkeypatch: pytest.MonkeyPatch):
    command, _ = fake_hil
    monkeypatch.setenv("FAKE_VERDICTS", json.dumps({"down": ["infra"]}))
    cells = expand_cells(scenarios(tmp_path, "up", "down"))
    result = run_plan(RunSetPlan("infra", tuple(cells), jobs=2), tmp_path / "set", command)
    assert (result.verdict, result.exit_code) == ("infra", 3)


def test_progress_lines_in_a_ci_log(tmp_path: Path, fake_hil: tuple[list[str], Path]) -> None:
    command, _ = fake_hil
    out = StringIO()
    terminal = Terminal(file=out, width=120, color_system=None)
    runner = RunSetRunner(RunSetPlan("p", tuple(expand_cells(scenarios(tmp_path, "one", "two"))), jobs=1),
                          tmp_path / "set", command)  # fmt: skip
    with live_progress(terminal, runner.progress) as on_change:
        runner.on_change = on_change
        runner.run()
    text = out.getvalue()
    assert "start one[run=1]" in text and "[1/2] one[run=1]: pass" in text and "[2/2] two[run=1]: pass" in text


def test_a_suite_expands_into_numbered_cells(tmp_path: Path) -> None:
    scenarios(tmp_path, "local")
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "mine"\nretry_infra = 2\njobs = 3\n'
        '[[runs]]\nscenario = "boot"\nsmp = [1, 4]\n'
        '[[runs]]\nscenario = "local.toml"\nrepeat = 2\nmemory = 512\nsnapshot = true\n'
        '[[runs]]\nscenario = "boot"\nsmp = 4\nappend = "quiet"\n'
    )
    plan = load_suite(str(suite))
    assert (plan.name, plan.jobs, plan.retry_infra) == ("mine", 3, 2)
    assert [c.title for c in plan.cells] == [
        "boot[smp=1,run=1]", "boot[smp=4,run=1]", "local[run=1]", "local[run=2]", "boot[smp=4,run=2]",
    ]  # fmt: skip
    assert plan.cells[2].scenario == str(tmp_path / "local.toml")
    assert plan.cells[2].args == ("--memory", "512", "--snapshot")
    assert plan.cells[4].args == ("--append", "quiet")
    assert len({cell.id for cell in plan.cells}) == len(plan.cells)
    assert [c.smp for c in load_suite(str(suite), smp_override=[2]).cells] == [2, 2, 2, 2]


@pytest.mark.parametrize(
    ("text", "problem"),
    [('[[runs]]\nscenario = "boot"\nsmp = [0]\n', "runs[0].smp"),
     ('[[runs]]\nscenario = "boot"\ncpus = 2\n', "runs[0].cpus"),
     ('name = "x"\n', "'runs'"),
     ('[[runs]]\nscenario = "no-such-scenario"\n', "unknown scenario")],
)  # fmt: skip
def test_suite_mistakes_name_the_key(tmp_path: Path, text: str, problem: str) -> None:
    suite = tmp_path / "bad.toml"
    suite.write_text(text)
    with pytest.raises(UsageError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_suite(str(suite))


def test_the_gate_suite_is_built_in_and_loads() -> None:
    assert "gate" in suite_names()
    plan = load_suite("gate")
    assert {cell.label for cell in plan.cells} >= {"boot", "nvme-uring"}
    assert plan.retry_infra >= 1 and {cell.smp for cell in plan.cells if cell.label == "boot"} == {1, 2, 4}


def parse(*argv: str) -> argparse.Namespace:
    """The `hil run` options as the CLI declares them."""
    return run_parser().parse_args(argv)


def test_command_line_decides_between_one_run_and_a_run_set() -> None:
    assert not runset_requested(parse("boot"))
    assert not runset_requested(parse("boot", "--smp", "2", "--junit", "j.xml"))
    assert runset_requested(parse("boot", "--smp", "1,2"))
    assert runset_requested(parse("boot", "nvme-uring"))
    assert runset_requested(parse("boot", "--repeat", "3"))
    assert runset_requested(parse("--suite", "gate"))
    with pytest.raises(UsageError):
        parse("boot", "--smp", "1,x")


def test_plan_from_the_command_line_forwards_common_options() -> None:
    common = ("--guest", "reference", "--accel", "tcg", "--no-snapshot", "--dump-guest-memory")
    plan = plan_from_args(parse("boot", "--smp", "1,2", "--repeat", "2", "-j", "3", "--retry-infra", "1", *common))
    assert [c.id for c in plan.cells] == ["boot-smp1-r1", "boot-smp1-r2", "boot-smp2-r1", "boot-smp2-r2"]
    assert (plan.jobs, plan.retry_infra) == (3, 1)
    assert plan.common_args == ("--guest", "reference", "--accel", "tcg", "--dump-guest-memory", "--no-snapshot")
    suite_plan = plan_from_args(parse("--suite", "gate", "--repeat", "2"))
    assert len(suite_plan.cells) == 2 * len(load_suite("gate").cells)
    assert suite_plan.retry_infra == load_suite("gate").retry_infra
    with pytest.raises(UsageError, match="--keep"):
        plan_from_args(parse("boot", "--smp", "1,2", "--keep"))


def test_cell_names() -> None:
    cell = Cell("hil/scenarios/boot.toml", "boot", 2, 3)
    assert (cell.id, cell.title) == ("boot-smp2-r3", "boot[smp=2,run=3]")
    assert Cell.from_json(cell.to_json()) == cell
