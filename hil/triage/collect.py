"""What a crashed or vanished guest leaves behind: its crash dump, and why QEMU exited.

`collect_crash` runs when a crash line shows up: it keeps reading the console until the dump is complete
(quiet for a moment, or QEMU gone), parses it with the guest's parser, symbolizes the faulting address when
the dump did not, and writes crash-report.json + crash-report.txt.

`explain_exit` tells an unexpected QEMU exit the guest asked for (a panic: GUEST_PANICKED or a crash on the
console; its own power-off or reset; an isa-debug-exit status) from one it did not (infra).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import HilError
from hil.guest.ansi import strip_ansi
from hil.results import Verdict
from hil.triage.crash import CrashReport, scrub
from hil.triage.guest_symbols import resolve_symbols
from hil.triage.hang import console_crash, drain_console, tail_text
from hil.triage.parsers import parse_crash
from hil.triage.symbols import SymbolTable
from hil.triage.target import TriageTarget

CRASH_JSON = "crash-report.json"
CRASH_TEXT = "crash-report.txt"
# hil's convention for isa-debug-exit (redoxer's, and hil's initfs probe's): value 25 -> status 51 pass,
# 26 -> 53 fail. A profile can name others with `debug_exit_verdicts`.
DEBUG_EXIT_VERDICTS = {51: Verdict.PASS, 53: Verdict.FAIL}
QUIET_SECONDS = 1.0
COLLECT_LIMIT = 6.0


def collect_crash(
    session: TriageTarget,
    *,
    quiet: float = QUIET_SECONDS,
    limit: float = COLLECT_LIMIT,
    strict: bool = False,
    near: str | None = None,
) -> CrashReport | None:
    """Read the rest of a crash dump from the console, parse it, write crash-report.json/.txt.

    `near`: the line that ended the run, to pick its report among several. `strict`: only a crash matching
    the profile's crash patterns (else: any crash the parsers know, as when a profile pattern matched a line
    the parsers do not start a report at)."""
    _read_until_quiet(session, quiet, limit)
    report = console_crash(session, near=near) or (None if strict else _any_crash(session))
    if report is None:
        return None
    _symbolize_rip(report, session)
    write_crash_report(report, session.run_dir)
    return report


def _any_crash(session: TriageTarget) -> CrashReport | None:
    fmt = session.profile.crash_format
    return parse_crash(tail_text(session.machine.paths.serial_log, 262144), [fmt] if fmt else None)


def _read_until_quiet(session: TriageTarget, quiet: float, limit: float) -> None:
    log = Path(session.machine.paths.serial_log)
    deadline = time.monotonic() + limit
    size = _size(log)
    while time.monotonic() < deadline and session.machine.is_running():
        drain_console(session.console, quiet)
        grown = _size(log)
        if grown == size:
            return
        size = grown


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _symbolize_rip(report: CrashReport, session: TriageTarget) -> None:
    """Name the function the faulting instruction is in: a kernel-mode fault's from the kernel's symbols, a
    user program's from its ELF where the profile has one (then the place joins the signature)."""
    rip = report.registers.get("RIP", "")
    if not rip or not all(c in "0123456789abcdefABCDEF" for c in rip):
        return
    if report.mode == "user":
        _symbolize_user_rip(report, session, int(rip, 16))
        return
    if report.mode != "kernel":
        return
    try:
        symbols = resolve_symbols(session, fetch=False)
    except Exception:
        return
    if symbols is None:
        return
    location = symbols.lookup(int(rip, 16))
    if location.symbol:
        report.registers["RIP_at"] = str(location)
        report.frame = report.frame or location.symbol


def _symbolize_user_rip(report: CrashReport, session: TriageTarget, rip: int) -> None:
    try:
        elf = session.profile.program_symbols(session.options, report.process)
        table = SymbolTable.from_elf(elf) if elf is not None else None
    except Exception:  # symbols are a bonus
        return
    location = table.lookup(rip) if table else None
    if location is not None and location.symbol:
        report.symbol = location.symbol
        report.registers["RIP_at"] = str(location)
        if report.frame == f"user:{report.process}":
            report.frame = f"user:{report.process}:{location.symbol}"


def write_crash_report(report: CrashReport, run_dir: Path) -> None:
    (Path(run_dir) / CRASH_JSON).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    (Path(run_dir) / CRASH_TEXT).write_text(render_crash(report))


def render_crash(report: CrashReport) -> str:
    where = ", ".join(
        f"{label} {value}" for label, value in (("CPU", report.cpu), ("PID", report.pid), ("process", report.process))
        if value is not None
    )  # fmt: skip
    lines = [
        f"{report.format} {report.kind}: {report.raw_title}",
        f"signature: {report.signature}",
        f"mode: {report.mode or '?'}" + (f"  ({where})" if where else ""),
        f"top frame: {report.frame or '?'}",
    ]
    if report.registers:
        lines.append("registers: " + " ".join(f"{k}={v}" for k, v in report.registers.items()))
    if report.backtrace:
        lines += ["backtrace:", *(f"  {frame}" for frame in report.backtrace)]
    lines += ["", "as printed:", *(f"  | {line}" for line in report.lines)]
    return "\n".join(lines) + "\n"


# --- unexpected QEMU exits -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestExit:
    verdict: Verdict
    reason: str
    signature: str | None
    crash: CrashReport | None = None


def explain_exit(session: TriageTarget, exit_status: int | None) -> GuestExit:
    """Why QEMU exited while hil still needed the guest."""
    events = _events(session)
    crash = collect_crash(session, quiet=0.2, limit=1.0, strict=True)
    if "GUEST_PANICKED" in events or crash is not None:
        why = "QEMU reported GUEST_PANICKED" if "GUEST_PANICKED" in events else "the guest crashed"
        reason = f"{why}: {crash.raw_title}" if crash else why
        return GuestExit(Verdict.CRASH, reason, crash.signature if crash else "crash:guest-panicked:unknown", crash)
    pattern = _crash_pattern_in_tail(session)
    if pattern:  # a crash the parsers do not know, seen by the profile's own pattern
        return GuestExit(Verdict.CRASH, f"the guest crashed (/{pattern}/)", f"crash:{scrub(pattern)}:unknown")
    shutdown = events.get("SHUTDOWN", {})
    if shutdown.get("guest") and shutdown.get("reason") == "guest-reset":
        return GuestExit(Verdict.CRASH, "the guest reset itself (a triple fault, or a reboot nobody asked for)",
                         "crash:guest-reset:unknown")  # fmt: skip
    if shutdown.get("guest") and shutdown.get("reason") == "guest-shutdown":
        return GuestExit(Verdict.FAIL, "the guest powered itself off", "fail:guest-poweroff")
    if exit_status is not None and exit_status > 1 and exit_status % 2 == 1 and not shutdown:
        return _debug_exit(session, exit_status)
    return GuestExit(Verdict.INFRA, f"QEMU exited (status {exit_status}) without the guest asking for it", None)


def _crash_pattern_in_tail(session: TriageTarget) -> str | None:
    tail = strip_ansi(tail_text(session.machine.paths.serial_log, 20000))
    patterns = session.profile.crash_patterns
    return next((p for p in patterns if re.search(p, tail, re.MULTILINE)), None)


def _debug_exit(session: TriageTarget, status: int) -> GuestExit:
    """isa-debug-exit: QEMU exits with (value << 1) | 1; the profile may map statuses to verdicts."""
    verdicts = session.profile.debug_exit_verdicts or DEBUG_EXIT_VERDICTS
    verdict = Verdict.parse(dict(verdicts).get(status, Verdict.FAIL))
    reason = f"the guest exited through isa-debug-exit (QEMU status {status}, value {status >> 1:#x})"
    return GuestExit(verdict, reason, None if verdict == Verdict.PASS else f"fail:debug-exit:{status}")


def _events(session: TriageTarget) -> dict[str, dict[str, Any]]:
    try:
        return {event.name: event.data for event in session.machine.qmp.events}
    except HilError:
        return {}
