"""Depth cases of several scenarios side by side: one column each, with the probe and its I/O path."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hil.probes.depths import DEPTH_PATHS, UNKNOWN_PATH
from hil.reports.facts import side_by_side
from hil.reports.html import write_html
from hil.results import Attempt, Cell, CellResult, RunSetResult, Verdict


def _depth(depth: int, iops: float) -> dict[str, Any]:
    metric = {"value": iops, "unit": "ops/s", "raw": str(iops)}
    return {"name": f"depth_{depth}", "number": depth, "status": "pass", "reason": "", "metrics": {"iops": metric}}


def _cell(label: str, program: str | None, depths: dict[int, float], verdict: str = "pass") -> Any:
    details = {"probe": {"program": program, "version": "1", "os": "x"}} if program else {}
    step = {"name": "probe", "kind": "probe", "status": "pass", "seconds": 1.0, "exit_status": 0, "reason": "",
            "output": "", "details": details, "cases": [_depth(d, v) for d, v in depths.items()]}  # fmt: skip
    return SimpleNamespace(cell=SimpleNamespace(label=label), verdict=verdict, report={"guest": "g", "steps": [step]})


def test_two_scenarios_give_one_column_each_with_their_paths() -> None:
    table = side_by_side([_cell("nvme-uring", "hil-uring-probe", {1: 100, 8: 800}),
                          _cell("redox-nvme", "hil-initfs-probe", {1: 50, 64: 500})])  # fmt: skip
    assert table is not None and not table.same_path
    assert table.depths == [1, 8, 64]
    uring, redox = table.columns
    assert uring.path == DEPTH_PATHS["hil-uring-probe"] and redox.path == DEPTH_PATHS["hil-initfs-probe"]
    assert redox.cases[64].value("iops") == 500 and 8 not in redox.cases


def test_one_scenario_failed_runs_and_unknown_probes() -> None:
    assert side_by_side([_cell("a", "hil-uring-probe", {1: 1})]) is None
    assert side_by_side([_cell("a", "p", {1: 1}), _cell("b", "p", {1: 2}, verdict="fail")]) is None
    table = side_by_side([_cell("a", None, {1: 1}), _cell("b", None, {1: 2})])
    assert table is not None and table.columns[0].path == UNKNOWN_PATH


def test_the_html_report_holds_the_table_and_plot(tmp_path: Path) -> None:
    def real(label: str, program: str, depths: dict[int, float]) -> CellResult:
        folder = tmp_path / label
        folder.mkdir()
        report = _cell(label, program, depths).report
        return CellResult(Cell(label, label), [Attempt(folder, Verdict.PASS, "ok", 0, 1.0)], report)

    cells = [real("nvme-uring", "hil-uring-probe", {1: 100, 8: 700}),
             real("redox-nvme", "hil-initfs-probe", {1: 50, 8: 90})]  # fmt: skip
    page = write_html(RunSetResult("set", tmp_path, cells), tmp_path / "html").read_text()
    assert "depth cases side by side" in page and "different I/O paths" in page
    assert DEPTH_PATHS["hil-initfs-probe"].split(":")[0] in page
    assert (tmp_path / "html" / "plots" / "side-by-side.png").is_file()
