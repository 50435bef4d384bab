"""Crash parsers, one per guest format, chosen from a map by the guest profile's `crash_format`.

Each parser reads console text and returns the first crash it finds as a CrashReport (hil.triage.crash), or
None. A new guest format is a module here and one entry in PARSERS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hil.guest.ansi import strip_ansi
from hil.triage.crash import CrashReport
from hil.triage.parsers import linux, redox

Parser = Callable[[str], CrashReport | None]
PARSERS: dict[str, Parser] = {"linux": linux.parse, "redox": redox.parse}


def parse_crash(text: str, formats: Sequence[str] | None = None) -> CrashReport | None:
    """The earliest crash in `text` (escape sequences and carriage returns are stripped first)."""
    plain = strip_ansi(text)
    chosen = [PARSERS[f] for f in formats if f in PARSERS] if formats else list(PARSERS.values())
    found = [(plain.find(r.lines[0]) if r.lines else 0, r) for parser in chosen if (r := parser(plain))]
    return min(found, key=lambda item: item[0])[1] if found else None
