"""Triage: telling a hang from a crash from infra, and saying where each one happened.

- watchdog: console waits that end on no progress (profile progress patterns, probe heartbeats).
- sampler + registers + classify + symbols: vCPU samples over QMP -> deadlock/idle, livelock, running.
- linux_oops, redox_crash (through crash.parse_crash): structured crash reports with stable signatures.
- hang, collect: the session-level entry points the runner calls; they write the report artifacts.
"""

from hil.triage.classify import Classification, classify
from hil.triage.collect import GuestExit, collect_crash, explain_exit
from hil.triage.crash import CrashReport, parse_crash
from hil.triage.hang import HangPlace, HangReport, TriageOptions, triage_hang
from hil.triage.registers import VcpuRegisters, parse_info_registers
from hil.triage.symbols import SymbolTable, demangle
from hil.triage.watchdog import NoProgress, ProgressWatch, WatchedConsole

__all__ = [
    "Classification",
    "CrashReport",
    "GuestExit",
    "HangPlace",
    "HangReport",
    "NoProgress",
    "ProgressWatch",
    "SymbolTable",
    "TriageOptions",
    "VcpuRegisters",
    "WatchedConsole",
    "classify",
    "collect_crash",
    "demangle",
    "explain_exit",
    "parse_crash",
    "parse_info_registers",
    "triage_hang",
]
