"""Reports of runs and run sets: JUnit XML, a static HTML page with plots, the terminal summary.

Every format is made from a RunSetResult (hil.results); a single `hil run` becomes a run set of one.
"""

from __future__ import annotations

from pathlib import Path

from hil.reports.junit import write_junit
from hil.results import RunSetResult


def write_reports(result: RunSetResult, junit: Path | None = None, html: Path | None = None) -> dict[str, Path]:
    """Write the reports asked for; returns {format: path}."""
    written: dict[str, Path] = {}
    if junit is not None:
        written["junit"] = write_junit(result, junit)
    if html is not None:
        from hil.reports.html import write_html  # matplotlib and jinja2 load only when a page is wanted

        written["html"] = write_html(result, html)
    return written
