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
    process: str | None = None  # the program's base name: the same on every boot
    program: str | None = None  # as the guest named it (`/scheme/initfs/bin/nulld`, `[bootstrap]`)
    message: str = ""
    detail: str | None = None  # what kind of the fault it was: a page fault's read, write or exec
    address: str | None = None  # the address the fault was about (a page fault's CR2)
    symbol: str | None = None  # the function the faulting instruction is in, where hil has the program's ELF
    lines: list[str] = field(default_factory=list)

    @property
    def signature(self) -> str:
        return f"crash:{self.title}:{self.frame or self.mode or 'unknown'}"

    @property
    def summary(self) -> str:
        """One line for people: `Page fault (write) in bootstrap at 0x1100 write_through_null`."""
        detail = self.detail
        if detail and self.address:  # a page fault: what it tried, where
            detail = f"{detail} {'to' if detail == 'write' else 'of'} {self.address}"
        words = [self.title + (f" ({detail})" if detail else "")]
        if self.process:
            words.append(f"in {self.process}")
        rip = self.registers.get("RIP", "")
        if _HEX_VALUE.fullmatch(rip):  # Redox prints the address; Linux's RIP line already names the function
            words.append(f"at {int(rip, 16):#x}" + (f" {self.symbol}" if self.symbol else ""))
        elif rip:
            words.append(f"at {rip}")
        elif self.frame and not self.frame.startswith("user"):
            words.append(f"in {self.frame}")
        return " ".join(words)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "signature": self.signature, "summary": self.summary}


# --- helpers shared by the parsers ---------------------------------------------------------------------------

_HEX_VALUE = re.compile(r"(?:0x)?[0-9a-fA-F]+")
_LONG_HEX = re.compile(r"\b(?:0x)?[0-9a-fA-F]{8,}\b")
_SHORT_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b")


def scrub(text: str) -> str:
    """Addresses and hex values out of a title, so two boots of the same bug read the same."""
    return " ".join(_SHORT_HEX.sub("X", _LONG_HEX.sub("X", text)).split())


# What differs between two boots of the same bug in a crash line: times, CPU numbers, process and context
# ids, a program's folder. (Redox: `UNHANDLED EXCEPTION, CPU #0, PID 3, NAME /scheme/initfs/bin/nulld,
# CONTEXT 0x...` reads `UNHANDLED EXCEPTION, CPU, PID, NAME nulld, CONTEXT`.)
_VOLATILE = (
    (re.compile(r"^\s*\d{4}-\d\d-\d\dT[\d:.-]+Z\s+"), ""),  # redox_log's time stamp
    (re.compile(r"^\s*\[\s*\d+\.\d+\]\s*"), ""),  # printk's
    (re.compile(r"\bCPU #?\d+"), "CPU"),
    (re.compile(r"\bPID (?:ContextId\()?\d+\)?"), "PID"),
    (re.compile(r"\bCONTEXT \S+"), "CONTEXT"),
    (re.compile(r"\bDEBUG ID: \d+"), "DEBUG ID"),
    (re.compile(r"\bNAME:? \[?(?:\S*/)?([^/\s,\]]+)\]?"), r"NAME \1"),
)


def stable_text(text: str) -> str:
    """A crash line as the same on every boot: no times, CPU numbers, ids, addresses or program folders."""
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return scrub(text)


def first_meaningful(frames: Sequence[str], noise: Sequence[re.Pattern[str]]) -> str | None:
    return next((f for f in frames if not any(n.search(f) for n in noise)), None)
