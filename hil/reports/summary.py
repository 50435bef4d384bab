"""The terminal summary of a run set: one row per run, the verdicts counted, where the reports are."""

from __future__ import annotations

from rich.console import Console as Terminal
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from hil.reports.facts import first_line, ready_seconds
from hil.reports.terminal import listing
from hil.results import RunSetResult

VERDICT_STYLE = {
    "pass": "bold green",
    "fail": "bold red",
    "crash": "bold red",
    "hang": "bold magenta",
    "infra": "bold yellow",
}


MIN_REASON_WIDTH = 30  # narrower, a reason folds into a column of word stubs: it goes under the table instead


def summary_table(result: RunSetResult, with_reason: bool = True) -> Table:
    table = Table(title=f"run set {result.name}", show_edge=False, title_justify="left")
    # Names and numbers keep their width; only the reason wraps (under itself) when the terminal is narrow.
    table.add_column("run", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("ready (s)", justify="right", no_wrap=True)
    table.add_column("run (s)", justify="right", no_wrap=True)
    table.add_column("tries", justify="right", no_wrap=True)
    if with_reason:
        table.add_column("reason", overflow="fold", ratio=1)
    for cell in result.cells:
        ready = ready_seconds(cell.report)
        style = VERDICT_STYLE.get(cell.verdict, "")
        reason = [escape(first_line(cell.reason))] if with_reason else []
        table.add_row(
            escape(cell.cell.title),
            f"[{style}]{cell.verdict}[/]",
            f"{ready:.2f}" if ready is not None else "-",
            f"{cell.seconds:.1f}",
            str(len(cell.attempts)),
            *reason,
        )
    return table


def _reason_fits(terminal: Terminal, result: RunSetResult) -> bool:
    rest = Measurement.get(terminal, terminal.options, summary_table(result, with_reason=False)).maximum
    return terminal.width - rest - 3 >= MIN_REASON_WIDTH


def verdict_line(result: RunSetResult) -> str:
    counts = ", ".join(f"{count} {verdict}" for verdict, count in result.counts.items() if count)
    style = VERDICT_STYLE.get(result.verdict, "")
    stopped = f"  ({escape(result.stopped)}: stopped early)" if result.stopped else ""
    return (f"verdict: [{style}]{result.verdict}[/]  {counts} of {len(result.cells)} runs in "
            f"{result.duration_s:.1f} s{stopped}")  # fmt: skip


def print_summary(terminal: Terminal, result: RunSetResult) -> None:
    if _reason_fits(terminal, result):
        terminal.print(summary_table(result))
    else:  # the reasons under the table, each run's in full width
        terminal.print(summary_table(result, with_reason=False))
        rows = ((escape(cell.cell.title), Text(first_line(cell.reason, width=600))) for cell in result.cells)
        terminal.print(listing(rows))  # a reason in full: a long path must not cut off what went wrong
    skipped = [(Text("not run:", style="dim"), Text(name, style="dim"), Text(first_line(why), style="dim"))
               for name, why in result.skipped.items()]  # fmt: skip
    if skipped:
        terminal.print(listing(skipped))
    terminal.print(verdict_line(result))
