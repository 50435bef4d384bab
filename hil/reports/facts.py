"""What every report format takes from a run: its last console lines, probe cases, depths, artifacts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.guest.ansi import strip_ansi
from hil.guest.profiles import get_profile, profile_names
from hil.guest.shell import ShellDialect
from hil.probes.depths import depth_path
from hil.reports.run_report import ARTIFACT_FILES
from hil.results import RUN_LOG_NAME, CellResult

TAIL_BYTES = 64 * 1024
DEPTH_CASE = re.compile(r"^depth_(\d+)$")
# Friendly names for the files a run folder holds; anything else is listed by its file name.
ARTIFACT_LABELS = {file: name.replace("_", " ") for name, file in ARTIFACT_FILES.items()} | {
    "report.json": "report",
    "argv.json": "argv (json)",
    RUN_LOG_NAME: "hil output",
}
# Disk overlays are large and only mean something next to their base image: they are not linked.
SKIPPED_SUFFIXES = (".qcow2", ".tmp", ".sock")


@dataclass(frozen=True)
class ProbeCase:
    step: str
    number: int
    name: str
    status: str
    reason: str
    metrics: dict[str, dict[str, Any]]

    @property
    def depth(self) -> int | None:
        match = DEPTH_CASE.match(self.name)
        return int(match.group(1)) if match else None

    def other_metrics(self, shown: tuple[str, ...]) -> str:
        """The metrics not in a table's own columns, as `name=raw unit` text."""
        rest = [
            f"{name}={entry.get('raw', entry.get('value'))} {entry.get('unit', '')}".strip()
            for name, entry in self.metrics.items()
            if name not in shown
        ]
        return ", ".join(rest)

    def value(self, metric: str) -> float | None:
        entry = self.metrics.get(metric)
        return float(entry["value"]) if entry else None


def probe_cases(report: dict[str, Any] | None) -> list[ProbeCase]:
    """Every probe case of every probe step, in order."""
    cases = []
    for step in (report or {}).get("steps", []):
        for case in step.get("cases", []):
            cases.append(
                ProbeCase(
                    step["name"],
                    int(case.get("number", 0)),
                    case.get("name", "?"),
                    case.get("status", "error"),
                    case.get("reason", ""),
                    case.get("metrics", {}),
                )
            )
    return cases


def depth_cases(cases: list[ProbeCase]) -> list[ProbeCase]:
    """The queue-depth cases (depth_1, depth_8, ...) ordered by depth."""
    return sorted((case for case in cases if case.depth is not None), key=lambda case: case.depth or 0)


def ready_seconds(report: dict[str, Any] | None) -> float | None:
    """Seconds until the guest was ready: QEMU's start to the last boot stage, or the snapshot restore."""
    report = report or {}
    if boot_kind(report) == "snapshot":
        return report["snapshot"].get("restore_seconds")
    stages = report.get("stages", [])
    if not stages or stages[-1].get("status") != "reached":
        return None
    return stages[-1].get("seconds")


def boot_kind(report: dict[str, Any] | None) -> str:
    """ "snapshot" when the guest was restored from a saved machine, else "cold"."""
    snapshot = (report or {}).get("snapshot")
    return "snapshot" if isinstance(snapshot, dict) and snapshot.get("restored") else "cold"


def last_console_lines(result: CellResult, count: int = 30) -> list[str]:
    """The guest's last words: the hang/crash record if there is one, else the tail of the console."""
    report = result.report or {}
    for key in ("hang", "crash"):
        lines = report.get(key, {}).get("last_lines") if isinstance(report.get(key), dict) else None
        if lines:
            return list(lines)[-count:]
    folder = result.report_dir
    if folder is None:
        return []
    for name in ("serial.log", "console.txt", RUN_LOG_NAME):  # what the guest printed, before hil's view of it
        text = _tail(folder / name)
        if text.strip():
            lines = shell_of(report.get("guest")).unframe(strip_ansi(text).splitlines())
            return [line for line in lines if line.strip()][-count:]
    return []


def shell_of(guest: object) -> ShellDialect:
    """The shell dialect a report's guest typed hil's commands in (POSIX for an unknown guest)."""
    return get_profile(guest).shell if guest in profile_names() else ShellDialect()


def first_line(text: str, width: int = 160) -> str:
    """Reasons can hold a whole QEMU command line: tables show their first line, details the rest."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def triage_text(result: CellResult, max_lines: int = 80) -> str:
    """The hang or crash report hil's triage wrote (symbolized stacks, vCPU samples), if there is one."""
    folder = result.report_dir
    for name in ("crash-report.txt", "hang-report.txt"):
        path = folder / name if folder else None
        if path and path.is_file():
            lines = path.read_text(errors="replace").splitlines()
            cut = [f"... ({len(lines) - max_lines} more lines in {name})"] if len(lines) > max_lines else []
            return "\n".join(lines[:max_lines] + cut)
    return ""


def failing_steps(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [step for step in (report or {}).get("steps", []) if step.get("status") != "pass"]


def artifact_files(run_dir: Path | None) -> list[tuple[str, Path]]:
    """(label, path) of every file in a run folder worth linking, the well-known ones first."""
    if run_dir is None or not run_dir.is_dir():
        return []
    files = [p for p in run_dir.iterdir() if p.is_file() and not p.name.endswith(SKIPPED_SUFFIXES)]
    known = list(ARTIFACT_LABELS)
    files.sort(key=lambda p: (known.index(p.name) if p.name in known else len(known), p.name))
    return [(ARTIFACT_LABELS.get(p.name, p.name), p) for p in files]


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


SIDE_METRICS = ("iops", "lat_p50_us", "lat_p99_us", "ooo")


@dataclass(frozen=True)
class SideColumn:
    """One scenario's depth cases in a side-by-side: who measured them and how."""

    scenario: str
    guest: str
    probe: str
    path: str
    cases: dict[int, ProbeCase]


@dataclass(frozen=True)
class SideBySide:
    columns: list[SideColumn]
    depths: list[int]
    same_path: bool  # one probe program for all: the numbers compare directly


def side_by_side(cells: list[CellResult]) -> SideBySide | None:
    """The depth cases of every scenario in the set that has them (its first passing run), when two or more
    scenarios do: one column each, with the probe and the I/O path it measured."""
    columns: dict[str, SideColumn] = {}
    for cell in cells:
        label = cell.cell.label
        cases = depth_cases(probe_cases(cell.report))
        if label in columns or cell.verdict != "pass" or not cases:
            continue
        program = _depth_probe(cell.report or {})
        columns[label] = SideColumn(label, (cell.report or {}).get("guest", "?"), program or "?",
                                    depth_path(program), {case.depth or 0: case for case in cases})  # fmt: skip
    if len(columns) < 2:
        return None
    depths = sorted({depth for column in columns.values() for depth in column.cases})
    programs = {column.probe for column in columns.values()}
    return SideBySide(list(columns.values()), depths, len(programs) == 1)


def _depth_probe(report: dict[str, Any]) -> str | None:
    """The program of the first step whose cases include depth cases."""
    for step in report.get("steps", []):
        if any(DEPTH_CASE.match(case.get("name", "")) for case in step.get("cases", [])):
            return step.get("details", {}).get("probe", {}).get("program")
    return None
