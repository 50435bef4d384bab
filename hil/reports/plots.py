"""PNG plots for the HTML report: boot-stage timelines, latency/IOPS per queue depth, the run-set overview.

Figures are made with matplotlib's object API (no pyplot): no global state, no display needed, safe to call
from any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, ScalarFormatter

from hil.reports.facts import ProbeCase, ready_seconds
from hil.results import CellResult

VERDICT_COLORS = {"pass": "#2e7d32", "fail": "#c62828", "crash": "#ad1457", "hang": "#6a1b9a", "infra": "#ef6c00"}
STAGE_COLORS = {"reached": "#1e88e5", "restored": "#90a4ae", "stuck": "#c62828", "missed": "#fbc02d"}
DPI = 110


def stage_timeline_png(report: dict[str, Any], path: Path) -> Path | None:
    """Horizontal bars: each boot stage from the previous one to its own mark, seconds since QEMU started."""
    stages = report.get("stages") or []
    spans = _stage_spans(stages, report.get("hang") or {})
    if not spans:
        return None
    figure = Figure(figsize=(7.5, 0.32 * len(spans) + 1.0), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    for row, (_, start, end, status, budget_end) in enumerate(spans):
        axes.barh(row, end - start, left=start, color=STAGE_COLORS.get(status, "#bdbdbd"), height=0.6)
        label = f"{end:.2f} s" if status != "stuck" else f"stuck after {end - start:.1f} s"
        axes.text(end, row, f"  {label}", va="center", fontsize=8)
        if budget_end is not None:
            axes.plot([budget_end, budget_end], [row - 0.4, row + 0.4], color="#c62828", linestyle="--")
    axes.set_yticks(range(len(spans)), [span[0] for span in spans])
    axes.invert_yaxis()
    axes.set_xlabel("seconds since QEMU started")
    axes.set_xlim(0, max(span[2] for span in spans) * 1.25 + 0.1)
    restored = all(span[3] == "restored" for span in spans)
    axes.set_title(
        "boot stages (restored from a snapshot: the original boot's)" if restored else "boot stages", fontsize=10
    )
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


Span = tuple[str, float, float, str, float | None]


def _stage_spans(stages: list[dict[str, Any]], hang: dict[str, Any]) -> list[Span]:
    """(name, start, end, status, budget end or None) per stage that has a time or is where the boot stuck."""
    spans = []
    previous = 0.0
    for stage in stages:
        status, seconds = stage.get("status"), stage.get("seconds")
        if seconds is not None:
            spans.append((stage["name"], previous, float(seconds), status, None))
            previous = float(seconds)
        elif status == "stuck":
            waited = float(hang.get("waited") or stage.get("budget") or 0.0)
            spans.append((stage["name"], previous, previous + waited, status, previous + float(stage["budget"])))
    return spans


def latency_png(cases: list[ProbeCase], path: Path, title: str = "io_uring probe") -> Path | None:
    """p50/p99 (and max) latency vs queue depth, and IOPS vs queue depth, side by side."""
    cases = [case for case in cases if case.depth is not None]
    if not cases:
        return None
    figure = Figure(figsize=(9, 3.4), dpi=DPI, layout="constrained")
    latency, iops = figure.subplots(1, 2)
    depths = [case.depth for case in cases]
    for metric, style in (("lat_p50_us", "o-"), ("lat_p99_us", "s-"), ("lat_max_us", "^:")):
        _series(latency, depths, [case.value(metric) for case in cases], style, metric.removeprefix("lat_"))
    latency.set_yscale("log")
    latency.set_ylabel("latency (µs)")
    latency.set_title("latency per queue depth", fontsize=10)
    _series(iops, depths, [case.value("iops") for case in cases], "o-", "IOPS", color="#2e7d32")
    iops.set_ylabel("IOPS")
    iops.set_ylim(bottom=0)
    iops.set_title("IOPS per queue depth", fontsize=10)
    for axes in (latency, iops):
        _depth_axis(axes, depths)
    figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def depth_comparison_png(series: dict[str, list[ProbeCase]], path: Path, title: str) -> Path | None:
    """p99 latency and IOPS per depth for several runs of one scenario (e.g. smp 1, 2, 4) on one plot."""
    series = {label: [c for c in cases if c.depth is not None] for label, cases in series.items()}
    series = {label: cases for label, cases in series.items() if cases}
    if len(series) < 2:
        return None
    figure = Figure(figsize=(9, 3.4), dpi=DPI, layout="constrained")
    latency, iops = figure.subplots(1, 2)
    all_depths: set[int] = set()
    for label, cases in series.items():
        depths = [case.depth or 0 for case in cases]
        all_depths.update(depths)
        _series(latency, depths, [case.value("lat_p99_us") for case in cases], "o-", label)
        _series(iops, depths, [case.value("iops") for case in cases], "o-", label)
    latency.set_yscale("log")
    latency.set_ylabel("p99 latency (µs)")
    iops.set_ylabel("IOPS")
    iops.set_ylim(bottom=0)
    for axes in (latency, iops):
        _depth_axis(axes, sorted(all_depths))
    figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def overview_png(cells: list[CellResult], path: Path) -> Path | None:
    """One bar per run: its whole duration, the boot-to-ready part darker, coloured by verdict."""
    if not cells:
        return None
    figure = Figure(figsize=(8, 0.38 * len(cells) + 1.2), dpi=DPI, layout="constrained")
    axes = figure.subplots()
    for row, cell in enumerate(cells):
        color = VERDICT_COLORS.get(cell.verdict, "#757575")
        axes.barh(row, cell.seconds, color=color, alpha=0.35, height=0.65)
        ready = ready_seconds(cell.report)
        if ready is not None:
            axes.barh(row, ready, color=color, height=0.65)
        axes.text(cell.seconds, row, f"  {cell.verdict} {cell.seconds:.1f} s", va="center", fontsize=8)
    axes.set_yticks(range(len(cells)), [cell.cell.title for cell in cells], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlim(0, max(cell.seconds for cell in cells) * 1.3 + 0.1)
    axes.set_xlabel("seconds (dark: until the guest was ready, by boot or snapshot restore; light: the whole run)")
    axes.grid(axis="x", alpha=0.3)
    return _save(figure, path)


def _series(axes: Any, depths: list[Any], values: list[float | None], style: str, label: str, **kw: Any) -> None:
    points = [(d, v) for d, v in zip(depths, values, strict=True) if v is not None]
    if points:
        axes.plot(*zip(*points, strict=True), style, label=label, **kw)
        axes.legend(fontsize=8)


def _depth_axis(axes: Any, depths: list[Any]) -> None:
    axes.set_xscale("log", base=2)
    axes.xaxis.set_major_locator(FixedLocator(depths))
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.xaxis.set_minor_locator(FixedLocator([]))
    axes.set_xlabel("queue depth")
    axes.grid(alpha=0.3)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
