"""The live view of a run set while it runs: a table of cells with state, try, elapsed time and activity.

On a terminal it redraws in place (rich Live); in a CI log, where redrawing only adds noise, each cell
prints one line when it starts and one when it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console as Terminal
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from hil.reports.summary import VERDICT_STYLE
from hil.reports.terminal import one_line
from hil.results import CellProgress, ProgressCallback

REFRESH_PER_SECOND = 4


class ProgressTable:
    """Renders the cells' progress each time rich refreshes the live display."""

    def __init__(self, cells: Sequence[CellProgress]) -> None:
        self.cells = cells
        self.spinners = {cell.cell.id: Spinner("dots", text="running", style="cyan") for cell in cells}

    def __rich__(self) -> Table:
        done = sum(1 for cell in self.cells if cell.state not in ("queued", "running"))
        running = sum(1 for cell in self.cells if cell.state == "running")
        table = Table(title=f"{done}/{len(self.cells)} done, {running} running", title_justify="left", show_edge=False)
        # Only the activity may shrink (rich collapses wrappable columns first); it stays one line, cut at
        # its end. The rest keep their width: a status, a try or a run name squeezed to nothing says nothing.
        table.add_column("run", no_wrap=True)
        table.add_column("status", no_wrap=True, min_width=9)
        table.add_column("try", justify="right", no_wrap=True)
        table.add_column("elapsed", justify="right", no_wrap=True, min_width=8)
        table.add_column("activity", ratio=1)
        for cell in self.cells:
            table.add_row(
                escape(cell.cell.title),
                self._status(cell),
                str(cell.attempt or ""),
                f"{cell.elapsed():.1f} s" if cell.started else "",
                one_line(cell.activity),
            )
        return table

    def _status(self, cell: CellProgress) -> Spinner | str:
        if cell.state == "running":
            return self.spinners[cell.cell.id]
        if cell.state == "queued":
            return "[dim]queued[/]"
        return f"[{VERDICT_STYLE.get(cell.state, '')}]{cell.state}[/]"


@contextmanager
def live_progress(terminal: Terminal, cells: Sequence[CellProgress]) -> Iterator[ProgressCallback]:
    """Yields the callback a RunSetRunner calls on every change of a cell."""
    if terminal.is_terminal:
        with Live(ProgressTable(cells), console=terminal, refresh_per_second=REFRESH_PER_SECOND, transient=False):
            yield lambda progress: None  # Live redraws from the shared progress objects by itself
        return
    yield _line_printer(terminal, len(cells))


def _line_printer(terminal: Terminal, total: int) -> ProgressCallback:
    lock = threading.Lock()
    announced: set[tuple[str, int]] = set()
    finished: set[str] = set()

    def on_change(progress: CellProgress) -> None:
        key = (progress.cell.id, progress.attempt)
        with lock:
            if progress.state == "running" and key not in announced:
                announced.add(key)
                again = f" (try {progress.attempt})" if progress.attempt > 1 else ""
                terminal.print(f"start {escape(progress.cell.title)}{again}", highlight=False)
            elif progress.state not in ("queued", "running") and progress.cell.id not in finished:
                finished.add(progress.cell.id)
                style = VERDICT_STYLE.get(progress.state, "")
                line = Text.from_markup(f"[{len(finished)}/{total}] {escape(progress.cell.title)}: "
                                        f"[{style}]{progress.state}[/] ({progress.elapsed():.1f} s) ")  # fmt: skip
                line.append(progress.activity)
                # One line per event, cut at its end: a CI log stays greppable; the summary has the rest.
                terminal.print(line, highlight=False, no_wrap=True, overflow="ellipsis")

    return on_change
