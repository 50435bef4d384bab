"""tokio's examples x smp values as a matrix: a view of the run set hil.tokio.suite makes.

The cells run as an ordinary run set (one `hil run` of a generated scenario per example and smp value, in
parallel, each with its own QEMU, run folder and verdict); this module turns that run set into the
examples-by-smp table, tokio-matrix.json and the MatrixResult the tests read, with the examples that were
not run (Windows-only, not built here) as `skip` cells.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hil.results import CellResult, RunSetResult, Verdict
from hil.runset import RunSetRunner, new_runset_dir
from hil.tokio.drivers import DRIVER_DIR, Driver
from hil.tokio.suite import DEFAULT_SMP, tokio_plan

MATRIX_JSON = "tokio-matrix.json"
SKIP = "skip"
STATUS_STYLE = {"pass": "green", "fail": "bold red", "hang": "bold magenta", "crash": "bold red",
                "infra": "bold yellow", SKIP: "dim"}  # fmt: skip


@dataclass
class Cell:
    example: str
    smp: int
    status: str  # a run's verdict (pass | fail | hang | crash | infra), or skip for an example not run
    reason: str
    seconds: float = 0.0
    artifacts: str = ""  # the driver's folder (driver.log), relative to the report folder


@dataclass
class MatrixResult:
    report_dir: Path
    cells: list[Cell]
    smp_values: tuple[int, ...]
    examples: list[str]
    duration: float
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(cell.status in (Verdict.PASS, SKIP) for cell in self.cells)


def run_matrix(
    smp_values: Sequence[int] = DEFAULT_SMP,
    examples: Sequence[str] | None = None,
    parallel: int = 2,
    report_dir: Path | None = None,
    timeout_factor: float | None = None,
    accel: str = "auto",
    drivers: Sequence[Driver] | None = None,
    console: Console | None = None,
) -> MatrixResult:
    """Every (example, smp) cell as a run set into `report_dir`, then the matrix of their verdicts.

    `drivers` replaces the built-in drivers (tests break one on purpose); `examples` picks by name.
    """
    suite = tokio_plan(smp_values, examples, drivers, console)
    options = ("--accel", accel) + (("--timeout-factor", str(timeout_factor)) if timeout_factor else ())
    plan = replace(suite.plan, jobs=parallel, common_args=(*suite.plan.common_args, *options))
    runset = RunSetRunner(plan, report_dir or new_runset_dir(plan.name)).run()
    smp = tuple(dict.fromkeys(smp_values))
    names = [driver.name for driver in suite.drivers] + [name for name, _ in plan.skipped]
    cells = [_cell(cell, runset) for cell in runset.cells]
    cells += [Cell(name, value, SKIP, reason) for name, reason in plan.skipped for value in smp]
    result = MatrixResult(runset.root, _ordered(cells, names, smp), smp, names, runset.duration_s)
    result.details = {"image": {"key": suite.image_info["key"], "root": str(suite.image_root)},
                      "tokio": suite.image_info, "runset": "runset.json", "parallel": parallel}  # fmt: skip
    write_json(result)
    return result


def _cell(cell: CellResult, runset: RunSetResult) -> Cell:
    folder = cell.report_dir / DRIVER_DIR / cell.cell.label if cell.report_dir else None
    artifacts = os.path.relpath(folder, runset.root) if folder is not None else ""
    return Cell(cell.cell.label, cell.cell.smp or 0, str(cell.verdict), cell.reason, round(cell.seconds, 2), artifacts)


# --- results --------------------------------------------------------------------------------------------


def _ordered(cells: list[Cell], names: list[str], smp_values: tuple[int, ...]) -> list[Cell]:
    rank = {name: index for index, name in enumerate(names)}
    return sorted(cells, key=lambda cell: (rank.get(cell.example, len(rank)), smp_values.index(cell.smp)))


def write_json(result: MatrixResult) -> Path:
    counts: dict[str, int] = {}
    for cell in result.cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    document = {
        "verdict": "pass" if result.ok else "fail",
        "summary": counts,
        "smp": list(result.smp_values),
        "examples": result.examples,
        "duration_s": round(result.duration, 1),
        **result.details,
        "cells": [asdict(cell) for cell in result.cells],
    }
    path = result.report_dir / MATRIX_JSON
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def matrix_table(result: MatrixResult) -> Table:
    table = Table(title="tokio examples x smp", show_edge=False)
    table.add_column("example")
    for smp in result.smp_values:
        table.add_column(f"smp {smp}")
    by_key = {(cell.example, cell.smp): cell for cell in result.cells}
    for name in result.examples:
        row = [by_key.get((name, smp)) for smp in result.smp_values]
        table.add_row(name, *(_cell_text(cell) for cell in row))
    return table


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    style = STATUS_STYLE.get(cell.status, "")
    seconds = f" {cell.seconds:.1f}s" if cell.status != SKIP and cell.seconds else ""
    return f"[{style}]{cell.status}[/]{seconds}"


def print_result(result: MatrixResult, console: Console) -> None:
    console.print(matrix_table(result))
    for cell in result.cells:
        if cell.status != Verdict.PASS and not (cell.status == SKIP and cell.smp != result.smp_values[0]):
            where = "" if cell.status == SKIP else f" @ smp {cell.smp}"
            console.print(f"  [{STATUS_STYLE.get(cell.status, '')}]{cell.status}[/] {cell.example}{where}: "
                          f"{cell.reason}", soft_wrap=True)  # fmt: skip
    verdict = "[bold green]pass[/]" if result.ok else "[bold red]fail[/]"
    console.print(f"verdict: {verdict}  ({result.duration:.0f} s)  report: {result.report_dir / MATRIX_JSON}")
