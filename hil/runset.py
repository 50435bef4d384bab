"""Run sets: many scenario runs (scenarios x smp values x repeats) in parallel, one `hil run` process each.

Every cell runs as its own `hil run ... --report-dir DIR` subprocess, so a QEMU is tied to exactly one hil
process and a stuck or crashing run cannot disturb the others. At most `jobs` cells run at once. A cell
whose verdict is infra can be re-run (`retry_infra`); fail, crash and hang never are: they are the kernel's.
Every report.json ends up in one `runset.json` in the run-set folder, which the reports (JUnit, HTML,
terminal summary) are made from.

Suites are TOML files (`hil/suites/gate.toml`) listing scenarios with their smp values and repeats.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hil.errors import UsageError
from hil.guest.profiles import profile_names
from hil.judge import describe_stop
from hil.lifetime import dies_with_hil
from hil.paths import new_run_dir, private_dir, state_dir
from hil.results import (
    RUN_LOG_NAME,
    USAGE_EXIT_CODE,
    Attempt,
    Cell,
    CellProgress,
    CellResult,
    ProgressCallback,
    RunSetResult,
    Verdict,
    read_report,
)
from hil.scenario import load_scenario, read_toml

SUITE_KEYS = {"name", "description", "jobs", "retry_infra", "runs"}
RUN_KEYS = {"scenario", "smp", "repeat", "guest", "memory", "timeout_factor", "snapshot", "append"}
# Child `hil run` processes print rich output into a pipe: a wide virtual terminal keeps lines unwrapped.
CHILD_ENV = {"COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


# --- what to run --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSetPlan:
    name: str
    cells: tuple[Cell, ...]
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    retry_infra: int = 0
    common_args: tuple[str, ...] = ()  # `hil run` options every cell gets (--guest, --accel, ...)
    skipped: tuple[tuple[str, str], ...] = ()  # (name, why) of what the set leaves out, for its reports
    shard: dict[str, Any] | None = None  # this set is one part of a sharded plan (hil.shard.shard_cells)
    description: str = ""


def expand_cells(
    scenarios: Sequence[str],
    smp_values: Sequence[int | None] = (None,),
    repeat: int = 1,
    args: tuple[str, ...] = (),
) -> list[Cell]:
    """scenarios x smp values x repeats, in that order; unknown scenarios fail here, before anything runs."""
    cells = []
    for scenario in scenarios:
        label = load_scenario(scenario).name
        for smp in smp_values or (None,):
            cells += [Cell(scenario, label, smp, index, args) for index in range(1, repeat + 1)]
    return cells


def numbered(cells: Iterable[Cell]) -> list[Cell]:
    """Number the runs of each (scenario, smp) 1, 2, 3... across the whole set, so every cell id is unique
    even when a suite lists a scenario twice (with other options)."""
    seen: dict[tuple[str, int | None], int] = {}
    result = []
    for cell in cells:
        key = (cell.label, cell.smp)
        seen[key] = seen.get(key, 0) + 1
        result.append(Cell(cell.scenario, cell.label, cell.smp, seen[key], cell.args))
    return result


# --- suites -------------------------------------------------------------------------------------------------


def suites_dir() -> Path:
    return Path(str(resources.files("hil") / "suites"))


def suite_names() -> list[str]:
    return sorted(p.stem for p in suites_dir().glob("*.toml"))


def load_suite(name_or_path: str, smp_override: Sequence[int] | None = None) -> RunSetPlan:
    """A suite by built-in name (`gate`) or path; `smp_override` replaces every entry's smp values."""
    path = _suite_path(name_or_path)
    data = read_toml(path)
    _check_keys(path, "", data, SUITE_KEYS)
    _check_types(path, "", data, SUITE_TYPES)
    runs = data.get("runs")
    if not isinstance(runs, list) or not runs:
        raise UsageError(f"{path}: key 'runs': missing or empty. Fix: add [[runs]] tables with scenario = \"boot\"")
    cells: list[Cell] = []
    for index, entry in enumerate(runs):
        cells += _suite_cells(path, index, entry, smp_override)
    return RunSetPlan(
        name=str(data.get("name", path.stem)),
        cells=tuple(numbered(cells)),
        jobs=int(data.get("jobs", os.cpu_count() or 1)),
        retry_infra=int(data.get("retry_infra", 0)),
        description=str(data.get("description", "")),
    )


def _suite_path(name_or_path: str) -> Path:
    """A bare name is a built-in suite, whatever the current folder holds; a path has a slash or .toml."""
    path = Path(name_or_path)
    builtin = suites_dir() / f"{name_or_path}.toml"
    if path.suffix != ".toml" and "/" not in name_or_path:
        if builtin.is_file():
            return builtin
        if not path.is_file():
            raise UsageError(f"unknown suite {name_or_path!r}; built-in suites: {', '.join(suite_names())}")
    if not path.is_file():
        problem = "is a folder, not a suite file" if path.is_dir() else "does not exist"
        raise UsageError(f"suite file {path} {problem}")
    return path


def _suite_cells(path: Path, index: int, entry: Any, smp_override: Sequence[int] | None) -> list[Cell]:
    where = f"runs[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("scenario"), str):
        raise UsageError(f"{path}: key '{where}.scenario': missing. Fix: write scenario = \"boot\" in each [[runs]]")
    _check_keys(path, f"{where}.", entry, RUN_KEYS)
    _check_types(path, f"{where}.", entry, RUN_OPTION_TYPES)
    smp = entry.get("smp", [None])
    smp_values = list(smp_override) if smp_override else (smp if isinstance(smp, list) else [smp])
    if not all(value is None or (isinstance(value, int) and value > 0) for value in smp_values):
        raise UsageError(f"{path}: key '{where}.smp': is {smp!r}. Fix: give a whole number or a list, e.g. [1, 2, 4]")
    repeat = entry.get("repeat", 1)
    if not isinstance(repeat, int) or repeat < 1:
        raise UsageError(f"{path}: key '{where}.repeat': is {repeat!r}. Fix: give a whole number of at least 1")
    scenario = entry["scenario"]
    if not Path(scenario).is_absolute() and (path.parent / scenario).is_file():
        scenario = str(path.parent / scenario)  # a scenario file beside the suite file
    return expand_cells([scenario], smp_values, repeat, _entry_args(entry))


def _whole(least: int) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= least


def _positive_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _text(value: Any) -> bool:
    return isinstance(value, str)


# The types of a suite's keys and of a [[runs]] entry's options: (check, what to write instead).
SUITE_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (_text, "a name in quotes"),
    "description": (_text, "a description in quotes"),
    "jobs": (_whole(1), "a whole number of at least 1"),
    "retry_infra": (_whole(0), "a whole number (0 for none)"),
}
RUN_OPTION_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "guest": (lambda value: value in profile_names(), f"one of {', '.join(profile_names())} in quotes"),
    "memory": (_whole(1), "a whole number of MiB"),
    "timeout_factor": (_positive_number, "a number greater than 0"),
    "snapshot": (lambda value: isinstance(value, bool), "true or false"),
    "append": (_text, "a kernel command line in quotes"),
}


def _check_types(path: Path, where: str, table: dict[str, Any], types: dict[str, Any]) -> None:
    for key, (valid, fix) in types.items():
        if key in table and not valid(table[key]):
            raise UsageError(f"{path}: key '{where}{key}': is {table[key]!r}. Fix: give {fix}")


def _entry_args(entry: dict[str, Any]) -> tuple[str, ...]:
    args: list[str] = []
    if "guest" in entry:
        args += ["--guest", str(entry["guest"])]
    if "memory" in entry:
        args += ["--memory", str(entry["memory"])]
    if "timeout_factor" in entry:
        args += ["--timeout-factor", str(entry["timeout_factor"])]
    if "append" in entry:
        args += ["--append", str(entry["append"])]
    if "snapshot" in entry:
        args.append("--snapshot" if entry["snapshot"] else "--no-snapshot")
    return tuple(args)


def _check_keys(path: Path, prefix: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise UsageError(f"{path}: key '{prefix}{key}': not a known key. Fix: use {', '.join(sorted(allowed))}")


# --- running ------------------------------------------------------------------------------------------------


class RunSetRunner:
    """Runs a plan's cells as `hil run` subprocesses, at most `jobs` at once, retrying infra verdicts."""

    def __init__(
        self,
        plan: RunSetPlan,
        root: Path,
        hil_command: Sequence[str] | None = None,
        on_change: ProgressCallback | None = None,
    ) -> None:
        self.plan = plan
        self.root = private_dir(root)
        self.hil_command = list(hil_command or [sys.executable, "-m", "hil.cli"])
        self.on_change = on_change or (lambda progress: None)
        self.progress = [CellProgress(cell) for cell in plan.cells]
        self.cancelled = threading.Event()
        self.stopped: str | None = None
        self.result: RunSetResult | None = None  # set when run() ends, however it ends
        self._children: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()

    def run(self) -> RunSetResult:
        started_wall, started = time.time(), time.monotonic()
        results = [CellResult(cell) for cell in self.plan.cells]
        pool = ThreadPoolExecutor(max_workers=max(1, self.plan.jobs), thread_name_prefix="hil-cell")
        try:
            futures = [pool.submit(self._run_cell, *pair) for pair in zip(self.progress, results, strict=True)]
            for future in futures:
                future.result()
        except BaseException as err:  # Ctrl-C or SIGTERM: stop the children, keep what finished
            self.stopped = describe_stop(err)
            self.cancel()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started_wall))
            result = RunSetResult(
                self.plan.name,
                self.root,
                results,
                stamp,
                time.monotonic() - started,
                self.plan.jobs,
                self.plan.retry_infra,
                self.stopped,
                dict(self.plan.skipped),
                self.plan.shard,
            )
            if self.stopped:
                for cell in results:
                    cell.not_started = f"never started: the run set was {self.stopped}"
            result.write()
            self.result = result
        return result

    def cancel(self) -> None:
        """Start no more cells and ask running ones to stop (they stop their QEMU and write their report)."""
        self.cancelled.set()
        with self._lock:
            for child in self._children:
                with contextlib.suppress(ProcessLookupError):
                    child.send_signal(signal.SIGTERM)

    def _run_cell(self, progress: CellProgress, result: CellResult) -> None:
        if self.cancelled.is_set():
            return
        progress.started = time.monotonic()
        for attempt in range(1, self.plan.retry_infra + 2):
            progress.state, progress.attempt, progress.activity = "running", attempt, "starting"
            self.on_change(progress)
            outcome = self._attempt(progress, self.root / "runs" / progress.cell.id / f"try{attempt}")
            result.attempts.append(outcome)
            result.report = read_report(outcome.report_dir)
            # Not retried: the kernel's verdicts, a user's mistake (exit 2), a stopped run set.
            if outcome.verdict != Verdict.INFRA or outcome.exit_code == USAGE_EXIT_CODE or self.cancelled.is_set():
                break
        progress.state, progress.finished, progress.activity = result.verdict, time.monotonic(), result.reason
        self.on_change(progress)

    def _attempt(self, progress: CellProgress, report_dir: Path) -> Attempt:
        if report_dir.exists():  # a run set written into the same folder before: its report must not count
            shutil.rmtree(report_dir)
        private_dir(report_dir)
        argv = self._argv(progress.cell, report_dir)
        started = time.monotonic()
        code, tail = self._spawn(argv, report_dir / RUN_LOG_NAME, progress)
        report = read_report(report_dir)
        seconds = time.monotonic() - started
        if report is None:
            reason = f"`hil run` exited with status {code} without a report: " + " | ".join(tail)[-600:]
            return Attempt(report_dir, Verdict.INFRA, reason, code, seconds)
        return Attempt(report_dir, Verdict.parse(report.get("verdict")), report.get("reason", ""), code, seconds)

    def _argv(self, cell: Cell, report_dir: Path) -> list[str]:
        argv = [*self.hil_command, "run", cell.scenario, "--report-dir", str(report_dir)]
        if cell.smp:
            argv += ["--smp", str(cell.smp)]
        # The run set's own options come last so they win over a suite entry's (argparse keeps the last).
        return [*argv, *cell.args, *self.plan.common_args]

    def _spawn(self, argv: list[str], log_path: Path, progress: CellProgress) -> tuple[int | None, list[str]]:
        """Run one `hil run`, teeing its output into the log and the live activity; returns status and tail."""
        tail: deque[str] = deque(maxlen=8)
        env = {**os.environ, **CHILD_ENV}
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"$ {' '.join(argv)}\n")
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                env=env,
                # SIGTERM, not SIGKILL: the child stops its QEMU in order and writes its report.
                preexec_fn=dies_with_hil(signal.SIGTERM),
            )
            with self._lock:
                self._children.add(child)
            try:
                assert child.stdout is not None
                for line in child.stdout:
                    log.write(line)
                    if line.strip():
                        tail.append(line.strip())
                        progress.activity = " ".join(line.split())[:100]
                        self.on_change(progress)
                return child.wait(), list(tail)
            finally:
                with self._lock:
                    self._children.discard(child)


def new_runset_dir(name: str) -> Path:
    return new_run_dir(name, parent=state_dir() / "runsets")


def run_plan(
    plan: RunSetPlan,
    root: Path | None = None,
    hil_command: Sequence[str] | None = None,
    on_change: ProgressCallback | None = None,
) -> RunSetResult:
    """Run every cell of `plan` into `root` (default: a new folder under the state dir) and write runset.json."""
    if not plan.cells:
        raise UsageError("the run set has no runs")
    runner = RunSetRunner(plan, root or new_runset_dir(plan.name), hil_command, on_change)
    return runner.run()
