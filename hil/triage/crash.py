"""Crash reports: one structured form for every guest's crash text, and the signature bisection compares.

Each guest kind has its own parser (hil.triage.parsers: linux, redox) that finds the first crash in console
text and fills a CrashReport; which parsers apply comes from the guest profile's `crash_format`
("linux", "redox"), and without one every parser is tried (their formats do not overlap).

A signature is `crash:<title>:<frame>`: the title without addresses or counters, and the first frame that
says where the problem is rather than how it was reported (not the panic or exception handler itself,
not the stack dumper). The same bug gives the same signature across boots and across nearby commits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CrashReport:
    format: str  # which parser read it: linux | redox
    kind: str  # oops | panic | bug | warning | exception | kernel-panic
    title: str  # normalized: stable across boots
    raw_title: str  # as printed
    frame: str | None = None  # the top meaningful frame
    mode: str | None = None  # kernel | user: where the faulting instruction was
    registers: dict[str, str] = field(default_factory=dict)
    backtrace: list[str] = field(default_factory=list)
    cpu: int | None = None
    pid: int | None = None
    process: str | None = None
    message: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def signature(self) -> str:
        return f"crash:{self.title}:{self.frame or self.mode or 'unknown'}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "signature": self.signature}


# --- helpers shared by the parsers ---------------------------------------------------------------------------

_LONG_HEX = re.compile(r"\b(?:0x)?[0-9a-fA-F]{8,}\b")
_SHORT_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")


def scrub(text: str) -> str:
    """Addresses and hex values out of a title, so two boots of the same bug read the same."""
    return " ".join(_SHORT_HEX.sub("X", _LONG_HEX.sub("X", text)).split())


def first_meaningful(frames: Sequence[str], noise: Sequence[re.Pattern[str]]) -> str | None:
    return next((f for f in frames if not any(n.search(f) for n in noise)), None)
