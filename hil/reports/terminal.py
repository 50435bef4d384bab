"""Terminal layout shared by every command: tables that fit the terminal (or 80 columns in a pipe).

Rich measures the terminal (COLUMNS, else 80 when stdout is no terminal); these helpers say which columns
may shrink or wrap, so names and short values are never cut and long text wraps under itself instead of
back to column 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text


def listing(rows: Iterable[Sequence[RenderableType]], indent: int = 2, gap: int = 2) -> Padding:
    """Names, then text: every column but the last stays one line; the last wraps on words under itself."""
    rows = [list(row) for row in rows]
    width = max((len(row) for row in rows), default=2)
    grid = Table.grid(padding=(0, gap, 0, 0), pad_edge=False)
    for _ in range(width - 1):
        grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for row in rows:
        grid.add_row(*row, *[""] * (width - len(row)))
    return Padding(grid, (0, 0, 0, indent), expand=False)


def one_line(text: str, style: str = "") -> Text:
    """A cell that stays one line whatever the width: cut with an ellipsis at the end, never wrapped."""
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")
