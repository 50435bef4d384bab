"""What runs and steps end in: verdicts, step statuses, step and run results, and the exit codes they map to.

The bottom of the house: every other module may import this one, and it imports nothing of hil but the
atomic file writer (hil.store), so reports, the runner, run sets and the pytest plugin all speak of
results in the same typed words. Run sets' results (cells, attempts, runset.json) live here too.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hil import __version__
from hil.store import atomic_write_json

if TYPE_CHECKING:
    from hil.guest.stages import Timeline
    from hil.qemu.accel import AccelChoice

USAGE_EXIT_CODE = 2
REPORT_NAME = "report.json"  # one run's report, in its run folder
RUNSET_NAME = "runset.json"  # a run set's, in its folder
RUN_LOG_NAME = "hil-run.log"  # what a run set's child `hil run` printed, beside its report
FORMAT_VERSION = 1


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    CRASH = "crash"
    HANG = "hang"
    INFRA = "infra"

    @classmethod
    def parse(cls, text: object) -> Verdict:
        """A verdict read from a report; anything unknown (or missing) counts as infra, never as a pass."""
        try:
            return cls(str(text))
        except ValueError:
            return cls.INFRA

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "infra": 3}.get(self.value, 1)

    @property
    def is_failure(self) -> bool:
        """The guest's (the kernel's) failure, as opposed to a pass or a problem of the host."""
        return self in (Verdict.FAIL, Verdict.CRASH, Verdict.HANG)

    @property
    def severity(self) -> int:
        """For combining several runs: the worst verdict wins."""
        return list(Verdict).index(self)


class CaseStatus(StrEnum):
    """A probe case's result (KTAP: ok, not ok, # SKIP; error: the case's output could not be read)."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"


class StepStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    HANG = "hang"
    # Cut short by something outside the step (a signal, QEMU exiting, a crash elsewhere, a bug in hil).
    INTERRUPTED = "interrupted"


def signal_exit_code(signum: int) -> int:
    """What a shell reports for a process stopped by `signum`: 128 + N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Terminated(SystemExit):
    """hil was asked to stop by a signal (SIGTERM, SIGHUP): unwinds like SystemExit, exits 128 + N.

    A SystemExit so that code catching Exception does not swallow it; the runner still maps it to a
    verdict before it goes on unwinding.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal_exit_code(signum))
        self.signum = signum

    def __str__(self) -> str:
        return f"terminated by {signal_name(self.signum)}"


@dataclass
class StepResult:
    name: str
    kind: str
    status: StepStatus
    seconds: float = 0.0
    exit_status: int | None = None
    output: str = ""  # its tail when long; the whole of it is in `output_file`
    reason: str = ""
    output_file: str | None = None  # relative to the run folder
    cases: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def cpus_brought_up(steps: list[StepResult]) -> int | None:
    """The CPUs the guest says it brought up: the smallest `cpus` metric any step's case reported."""
    cases = [case for step in steps for case in step.cases]
    counts = [case["metrics"]["cpus"]["value"] for case in cases if "cpus" in case.get("metrics", {})]
    return int(min(counts)) if counts else None


@dataclass
class FaultEvent:
    """A program's fault the guest went on after (a Redox daemon's page fault during boot): a crash of the
    run unless the scenario allows that program's fault (`allow_faults`), when it is shown as known."""

    summary: str  # `Page fault (write) in nulld at 0x2010`
    title: str
    process: str | None
    mode: str | None  # user | kernel
    signature: str
    line: str  # the guest's line that ended the fault report
    seconds: float | None = None  # since QEMU started
    excerpt: list[str] = field(default_factory=list)
    allowed: bool = False


def fault_allowed(entries: tuple[str, ...] | list[str], process: str | None, title: str) -> bool:
    """Whether a scenario's `allow_faults` (or `hil triage --allow`) covers a fault: `nulld` allows every fault
    of nulld, `nulld:Page fault` only that kind, `:panic at src/lib.rs` that kind whatever the program."""
    for entry in entries:
        name, _, kind = entry.partition(":")
        if (not name or name == process) and (name or kind) and title.startswith(kind.strip()):
            return True
    return False


@dataclass
class RunResult:
    """One run as it happened; the verdict starts as infra ("did not finish") and is judged at the end."""

    scenario: str
    guest: str
    run_dir: Path
    verdict: Verdict = Verdict.INFRA
    reason: str = "the run did not finish"
    accel: AccelChoice | None = None
    timeline: Timeline | None = None
    steps: list[StepResult] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started_wall: float = field(default_factory=time.time)
    duration: float = 0.0
    kept: dict[str, Any] | None = None
    # A user mistake seen only once the run was under way (a package file whose data fails its blake3 as the
    # image is written; a truncated or badly signed one is refused before the run): infra, yet exit 2, not retried.
    usage_error: bool = False
    faults: list[FaultEvent] = field(default_factory=list)

    def judged(self, verdict: Verdict, reason: str) -> None:
        self.verdict, self.reason = verdict, reason

    @property
    def exit_code(self) -> int:
        return USAGE_EXIT_CODE if self.usage_error else self.verdict.exit_code


# --- run sets -------------------------------------------------------------------------------------------


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
    skipped: dict[str, str] = field(default_factory=dict)  # what the set left out on purpose, and why
    # A part of a sharded set (index, total, the whole plan, the split's digest), or what a merge was made of.
    shard: dict[str, Any] | None = None

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
            "skipped": self.skipped,
            "shard": self.shard,
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
                   data.get("stopped"), data.get("skipped", {}), data.get("shard"))  # fmt: skip

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


