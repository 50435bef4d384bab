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
import ctypes
import json
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

from hil import __version__
from hil.errors import UsageError
from hil.guest.profiles import profile_names
from hil.judge import describe_stop
from hil.paths import new_run_dir, private_dir, state_dir
from hil.report import REPORT_NAME
from hil.results import USAGE_EXIT_CODE, Verdict
from hil.scenario import load_scenario, read_toml
from hil.store import atomic_write_json

RUNSET_NAME = "runset.json"
RUN_LOG_NAME = "hil-run.log"
FORMAT_VERSION = 1
SUITE_KEYS = {"name", "description", "jobs", "retry_infra", "runs"}
RUN_KEYS = {"scenario", "smp", "repeat", "guest", "memory", "timeout_factor", "snapshot", "append"}
# Child `hil run` processes print rich output into a pipe: a wide virtual terminal keeps lines unwrapped.
CHILD_ENV = {"COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved at import: a child between fork and exec loads nothing


# --- what to run --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One run of the set: a scenario with its machine overrides, and which repeat it is."""

    scenario: str  # a built-in name or a .toml path, as `hil run` takes it
    label: str  # the scenario's name, for ids and reports
    smp: int | None = None
    repeat: int = 1
    args: tuple[str, ...] = ()  # further `hil run` options for this cell (from a suite entry)

    @property
    def id(self) -> str:
        smp = f"-smp{self.smp}" if self.smp else ""
        return f"{self.label}{smp}-r{self.repeat}"

    @property
    def title(self) -> str:
        """How reports name the run: scenario[smp=2,run=1]."""
        smp = f"smp={self.smp}," if self.smp else ""
        return f"{self.label}[{smp}run={self.repeat}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "label": self.label,
            "smp": self.smp,
            "repeat": self.repeat,
            "args": list(self.args),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Cell:
        return cls(data["scenario"], data["label"], data.get("smp"), data.get("repeat", 1), tuple(data.get("args", ())))


@dataclass(frozen=True)
class RunSetPlan:
    name: str
    cells: tuple[Cell, ...]
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    retry_infra: int = 0
    common_args: tuple[str, ...] = ()  # `hil run` options every cell gets (--guest, --accel, ...)


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


# --- results ------------------------------------------------------------------------------------------------


@dataclass
class Attempt:
    report_dir: Path
    verdict: Verdict
    reason: str
    exit_code: int | None
    seconds: float

    def __post_init__(self) -> None:
        self.verdict = Verdict.parse(self.verdict)  # read from a report: a typed verdict from here on


@dataclass
class CellResult:
    cell: Cell
    attempts: list[Attempt] = field(default_factory=list)
    report: dict[str, Any] | None = None  # the last attempt's report.json
    not_started: str = "never started"  # the reason, for a cell that never ran

    @property
    def verdict(self) -> Verdict:
        return self.attempts[-1].verdict if self.attempts else Verdict.INFRA

    @property
    def reason(self) -> str:
        return self.attempts[-1].reason if self.attempts else self.not_started

    @property
    def report_dir(self) -> Path | None:
        return self.attempts[-1].report_dir if self.attempts else None

    @property
    def seconds(self) -> float:
        return sum(attempt.seconds for attempt in self.attempts)


@dataclass
class RunSetResult:
    name: str
    root: Path  # the run-set folder; report dirs are stored relative to it
    cells: list[CellResult]
    started: str = ""
    duration_s: float = 0.0
    jobs: int = 1
    retry_infra: int = 0
    stopped: str | None = None  # what stopped the run set early ("terminated by SIGTERM"), if anything

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(map(str, Verdict), 0)
        for cell in self.cells:
            counts[cell.verdict] += 1
        return counts

    @property
    def verdict(self) -> Verdict:
        """fail if the kernel failed anywhere, else infra if the host did (or the set was stopped), else pass."""
        verdicts = {cell.verdict for cell in self.cells}
        if any(verdict.is_failure for verdict in verdicts):
            return Verdict.FAIL
        return Verdict.INFRA if Verdict.INFRA in verdicts or self.stopped else Verdict.PASS

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "hil_version": __version__,
            "name": self.name,
            "started": self.started,
            "duration_s": round(self.duration_s, 3),
            "jobs": self.jobs,
            "retry_infra": self.retry_infra,
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "stopped": self.stopped,
            "counts": self.counts,
            "cells": [self._cell_json(cell) for cell in self.cells],
        }

    def _cell_json(self, result: CellResult) -> dict[str, Any]:
        return {
            "id": result.cell.id,
            "title": result.cell.title,
            **result.cell.to_json(),
            "verdict": result.verdict,
            "reason": result.reason,
            "seconds": round(result.seconds, 3),
            "report_dir": self.relative(result.report_dir),
            "attempts": [
                {
                    "report_dir": self.relative(a.report_dir),
                    "verdict": a.verdict,
                    "reason": a.reason,
                    "exit_code": a.exit_code,
                    "seconds": round(a.seconds, 3),
                }
                for a in result.attempts
            ],
            "report": result.report,
        }

    def relative(self, path: Path | None) -> str | None:
        if path is None:
            return None
        return os.path.relpath(path, self.root)

    def write(self) -> Path:
        return atomic_write_json(self.root / RUNSET_NAME, self.to_json())

    @classmethod
    def load(cls, path: Path) -> RunSetResult:
        """A run set from its runset.json (or the folder holding it)."""
        path = path / RUNSET_NAME if path.is_dir() else path
        data = json.loads(path.read_text())
        root = path.parent
        cells = [
            CellResult(
                Cell.from_json(cell),
                [
                    Attempt(
                        root / a["report_dir"], Verdict.parse(a["verdict"]), a["reason"], a["exit_code"], a["seconds"]
                    )
                    for a in cell["attempts"]
                ],
                cell.get("report"),
            )
            for cell in data["cells"]
        ]
        return cls(data["name"], root, cells, data["started"], data["duration_s"], data["jobs"], data["retry_infra"],
                   data.get("stopped"))  # fmt: skip

    @classmethod
    def from_run_dirs(cls, run_dirs: Iterable[Path], name: str = "hil", root: Path | None = None) -> RunSetResult:
        """A run set made of finished single runs (`hil run --junit`), one cell each."""
        cells = []
        for run_dir in run_dirs:
            report = read_report(run_dir) or {}
            label = report.get("scenario", run_dir.name)
            smp = _report_smp(run_dir)
            cell = Cell(label, label, smp)
            attempt = Attempt(
                run_dir,
                Verdict.parse(report.get("verdict")),
                report.get("reason", "no report.json"),
                None,
                float(report.get("duration_s", 0.0)),
            )
            cells.append(CellResult(cell, [attempt], report or None))
        started = cells[0].report.get("started", "") if cells and cells[0].report else ""
        duration = sum(cell.seconds for cell in cells)
        base = root or (cells[0].attempts[0].report_dir.parent if cells else Path.cwd())
        return cls(name, base, cells, started, duration)


def read_report(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / REPORT_NAME).read_text())
    except (OSError, ValueError):
        return None


def _report_smp(run_dir: Path) -> int | None:
    """The -smp a run used, from the argv it wrote (report.json does not carry it)."""
    try:
        argv = json.loads((run_dir / "argv.json").read_text())
        return int(argv[argv.index("-smp") + 1])
    except (OSError, ValueError, IndexError):
        return None


# --- running ------------------------------------------------------------------------------------------------


@dataclass
class CellProgress:
    """What the live display shows of a cell; updated by the worker thread running it."""

    cell: Cell
    state: str = "queued"  # queued | running | a verdict
    attempt: int = 0
    activity: str = ""
    started: float | None = None
    finished: float | None = None

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started


ProgressCallback = Callable[[CellProgress], None]


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
        parent = os.getpid()
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
                preexec_fn=lambda: _die_with_parent(parent),
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


def _die_with_parent(parent_pid: int) -> None:
    """In the child before exec: SIGTERM when the run set dies, so hil stops its QEMU in order."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


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
