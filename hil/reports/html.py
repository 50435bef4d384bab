"""A static HTML report of a run set: index.html, PNG plots beside it, relative links to every artifact.

No JavaScript: the page is a verdict table, then one section per run with its boot-stage timeline, its
steps, its probe cases with latency/IOPS plots per queue depth, the guest's last console lines when it did
not pass, and links to every file of its run folder. Links are relative, so the run-set folder can be
moved or published as a CI artifact as a whole.
"""

from __future__ import annotations

import os
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader

import hil.reports.plots as plots
from hil import __version__
from hil.reports.facts import (
    SIDE_METRICS,
    ProbeCase,
    artifact_files,
    boot_kind,
    depth_cases,
    failing_steps,
    first_line,
    last_console_lines,
    probe_cases,
    ready_seconds,
    side_by_side,
    triage_text,
)
from hil.results import CellResult, RunSetResult

INDEX_NAME = "index.html"
PLOTS_DIR = "plots"
CASE_METRICS = ("iops", "lat_p50_us", "lat_p99_us", "lat_max_us")


@dataclass
class Link:
    label: str
    href: str


@dataclass
class RunView:
    """One run as the template shows it; every href is relative to the page."""

    cell: CellResult
    anchor: str
    folder: str
    ready: float | None
    boot: str
    stages: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    cases: list[ProbeCase]
    console: list[str]
    triage: str
    failing: list[dict[str, Any]]
    artifacts: list[Link]
    earlier: list[Link]
    stage_plot: str | None = None
    latency_plot: str | None = None
    report: dict[str, Any] = field(default_factory=dict)


def write_html(result: RunSetResult, out_dir: Path) -> Path:
    """Write index.html and its plots into `out_dir` (often the run-set folder itself)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [_run_view(cell, out_dir) for cell in result.cells]
    context = {
        "result": result,
        "runs": runs,
        "host": socket.gethostname(),
        "hil_version": __version__,
        "overview_plot": _rel(plots.overview_png(result.cells, out_dir / PLOTS_DIR / "overview.png"), out_dir),
        "comparisons": _comparisons(result.cells, out_dir),
        "side": _side_by_side(result.cells, out_dir),
        "side_metrics": SIDE_METRICS,
        "metrics": CASE_METRICS,
    }
    page = _environment().get_template("index.html.j2").render(**context)
    index = out_dir / INDEX_NAME
    index.write_text(page, encoding="utf-8")
    return index


def _run_view(cell: CellResult, out_dir: Path) -> RunView:
    report = cell.report or {}
    cases = probe_cases(report)
    plot_dir = out_dir / PLOTS_DIR
    return RunView(
        cell=cell,
        anchor=cell.cell.id,
        folder=_rel(cell.report_dir, out_dir) or "",
        ready=ready_seconds(report),
        boot=boot_kind(report),
        stages=report.get("stages", []),
        steps=report.get("steps", []),
        cases=cases,
        console=last_console_lines(cell) if cell.verdict != "pass" else [],
        triage=triage_text(cell),
        failing=failing_steps(report),
        artifacts=[Link(label, _rel(path, out_dir) or "") for label, path in artifact_files(cell.report_dir)],
        earlier=[
            Link(f"try {i} ({a.verdict}): {first_line(a.reason, 100)}", _rel(a.report_dir, out_dir) or "")
            for i, a in enumerate(cell.attempts[:-1], start=1)
        ],
        stage_plot=_rel(plots.stage_timeline_png(report, plot_dir / f"{cell.cell.id}-stages.png"), out_dir),
        latency_plot=_rel(
            plots.latency_png(
                depth_cases(cases), plot_dir / f"{cell.cell.id}-depths.png", f"{cell.cell.title}: io_uring probe"
            ),
            out_dir,
        ),
        report=report,
    )


def _comparisons(cells: list[CellResult], out_dir: Path) -> list[Link]:
    """Per scenario run more than once (smp values, repeats): p99 and IOPS per depth, every run overlaid."""
    by_scenario: dict[str, dict[str, list[ProbeCase]]] = defaultdict(dict)
    for cell in cells:
        by_scenario[cell.cell.label][cell.cell.title] = depth_cases(probe_cases(cell.report))
    links = []
    for scenario, series in by_scenario.items():
        path = plots.depth_comparison_png(
            series, out_dir / PLOTS_DIR / f"{scenario}-compare.png", f"{scenario}: every run"
        )
        if path:
            links.append(Link(scenario, _rel(path, out_dir) or ""))
    return links


@dataclass
class SideView:
    table: Any  # facts.SideBySide
    plot: str | None


def _side_by_side(cells: list[CellResult], out_dir: Path) -> SideView | None:
    """Scenarios' depth cases in one table and one plot (e.g. nvme-uring and redox-nvme on the same disk)."""
    table = side_by_side(cells)
    if table is None:
        return None
    series = {column.scenario: list(column.cases.values()) for column in table.columns}
    path = plots.depth_comparison_png(series, out_dir / PLOTS_DIR / "side-by-side.png", "depth cases side by side")
    return SideView(table, _rel(path, out_dir))


def _rel(path: Path | None, base: Path) -> str | None:
    if path is None:
        return None
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("hil.reports", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    environment.filters["seconds"] = lambda value: "-" if value is None else f"{float(value):.2f}"
    environment.filters["metric"] = _metric_text
    environment.filters["first_line"] = first_line
    return environment


def _metric_text(entry: dict[str, Any] | None) -> str:
    if not entry:
        return ""
    value = float(entry["value"])
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:g}"
