"""Crash parsers, one per guest format, chosen from a map by the guest profile's `crash_format`.

Each parser reads console text and returns the first crash it finds as a CrashReport (hil.triage.crash), or
None. A new guest format is a module here and one entry in PARSERS.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from hil.guest.ansi import strip_ansi
from hil.triage.crash import CrashReport
from hil.triage.parsers import linux, redox

Parser = Callable[[str], CrashReport | None]
PARSERS: dict[str, Parser] = {"linux": linux.parse, "redox": redox.parse}


def parse_fault(
    lines: Sequence[str], last_line: str, end_patterns: Sequence[str], formats: Sequence[str] | None = None
) -> CrashReport | None:
    """The fault report that `last_line` ends, read from the console's recent `lines`; an earlier report in
    them (one that ended at an earlier line matching `end_patterns`, the profile's) is left out."""
    ends = [index for index, line in enumerate(lines) if last_line.strip() in line]
    end = ends[-1] if ends else len(lines) - 1
    earlier = [index + 1 for index, line in enumerate(lines[:end]) if any(re.search(p, line) for p in end_patterns)]
    return parse_crash("\n".join(lines[max(earlier, default=0) : end + 1]) + "\n", formats)


def parse_crashes(text: str, formats: Sequence[str] | None = None) -> list[CrashReport]:
    """Every crash and fault report in `text`, in order: each search starts after the last report's lines (a
    report's lines are consecutive lines of the text, perhaps without their log prefix)."""
    lines, found, cursor = strip_ansi(text).split("\n"), [], 0
    while (report := parse_crash("\n".join(lines[cursor:]), formats)) is not None and report.lines:
        found.append(report)
        first = report.lines[0].strip()
        start = next((index for index in range(cursor, len(lines)) if first in lines[index]), cursor)
        cursor = start + len(report.lines)
    return found


def parse_crash(text: str, formats: Sequence[str] | None = None) -> CrashReport | None:
    """The earliest crash in `text` (escape sequences and carriage returns are stripped first)."""
    plain = strip_ansi(text)
    chosen = [PARSERS[f] for f in formats if f in PARSERS] if formats else list(PARSERS.values())
    found = [(plain.find(r.lines[0]) if r.lines else 0, r) for parser in chosen if (r := parser(plain))]
    return min(found, key=lambda item: item[0])[1] if found else None
