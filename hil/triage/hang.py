"""Hang triage of a live session: sample the vCPUs, symbolize, classify, sign, and write the hang report.

Called the moment a wait ends without progress, before anything else touches the guest (no shell resync,
no Ctrl-C), so the samples show the hang itself. The report goes into report.json (`hang`) and into
`hang-report.json` + `hang-report.txt` in the run folder; `--dump-guest-memory` adds `guest-memory.elf`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hil.errors import HilError
from hil.guest.ansi import strip_ansi
from hil.guest.profiles import GuestProfile
from hil.triage.classify import DEFAULT_IDLE_SYMBOLS, Classification, CpuState, Sample, classify, locate
from hil.triage.crash import CrashReport
from hil.triage.guest_symbols import resolve_symbols
from hil.triage.parsers import parse_crashes
from hil.triage.sampler import DEFAULT_INTERVAL, DEFAULT_SAMPLES, VcpuSnapshot, sample_vcpus
from hil.triage.symbols import SymbolTable
from hil.triage.target import TriageTarget
from hil.triage.watchdog import WatchedConsole

HANG_JSON = "hang-report.json"
HANG_TEXT = "hang-report.txt"
MEMORY_DUMP = "guest-memory.elf"


@dataclass(frozen=True)
class HangPlace:
    """Where the run was when progress stopped: a boot stage, a step, or the shell after boot."""

    kind: str  # stage | step | shell
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class TriageOptions:
    samples: int = DEFAULT_SAMPLES
    interval: float = DEFAULT_INTERVAL
    dump_guest_memory: bool = False
    fetch_symbols: bool = True


@dataclass
class HangReport:
    place: HangPlace
    classification: Classification
    samples: dict[int, list[Sample]]
    snapshots: list[VcpuSnapshot]
    symbols: str | None
    last_lines: list[str]
    stall: dict[str, Any] = field(default_factory=dict)
    guest_panicked: bool = False
    crash: CrashReport | None = None
    problems: list[str] = field(default_factory=list)
    memory_dump: str | None = None

    @property
    def signature(self) -> str:
        kind = self.classification.kind
        if kind in ("livelock", "user-loop"):
            return f"hang:{kind}:{'+'.join(self.classification.spinning)}"
        return f"hang:{kind}:{self.place}"

    def summary(self) -> str:
        return f"{self.classification.kind}: {self.classification.explanation}"

    def as_dict(self) -> dict[str, Any]:
        threads = self.snapshots[0].threads if self.snapshots else {}
        return {
            "place": str(self.place),
            "signature": self.signature,
            "classification": self.classification.kind,
            "explanation": self.classification.explanation,
            "spinning": self.classification.spinning,
            "cpus": [self._cpu_dict(cpu, threads.get(cpu.cpu)) for cpu in self.classification.cpus],
            "sample_times_s": [s.seconds for s in self.snapshots],
            "vm_status": self.snapshots[0].status if self.snapshots else None,
            "symbols": self.symbols,
            "watchdog": self.stall,
            "guest_panicked": self.guest_panicked,
            "crash": self.crash.as_dict() if self.crash else None,
            "memory_dump": self.memory_dump,
            "problems": self.problems,
            "last_lines": self.last_lines,
        }

    def _cpu_dict(self, cpu: CpuState, thread_id: int | None) -> dict[str, Any]:
        samples = [s.as_dict() for s in self.samples.get(cpu.cpu, [])]
        return {**asdict(cpu), "thread_id": thread_id, "samples": samples}


def triage_hang(
    session: TriageTarget,
    place: HangPlace,
    *,
    stall: dict[str, Any] | None = None,
    options: TriageOptions | None = None,
) -> HangReport:
    """Look at a hung guest and write hang-report.json/.txt into the run folder."""
    options = options or TriageOptions()
    problems: list[str] = []
    snapshots = _sample(session, options, problems)
    symbols = _symbols(session, options, problems)
    samples = _locate_all(snapshots, symbols)
    report = HangReport(
        place=place,
        classification=classify(samples, idle_symbols_of(session.profile)),
        samples=samples,
        snapshots=snapshots,
        symbols=f"{symbols.source} ({len(symbols)} functions)" if symbols else None,
        last_lines=session.console.recent_lines(40),
        stall=stall or {},
        guest_panicked=_guest_panicked(session),
        crash=console_crash(session),
        problems=problems,
    )
    if options.dump_guest_memory:
        report.memory_dump = _dump_memory(session, problems)
    write_hang_report(report, session.run_dir)
    return report


def idle_symbols_of(profile: GuestProfile) -> Sequence[str]:
    return tuple(profile.idle_symbols or DEFAULT_IDLE_SYMBOLS)


def console_crash(session: TriageTarget, tail_bytes: int = 262144, near: str | None = None) -> CrashReport | None:
    """The crash the guest printed, read from the serial log's tail: the report holding the line `near` (the
    line that ended the run), else the first one matching the profile's crash patterns (a program's fault the
    guest went on after is not the crash)."""
    text = strip_ansi(tail_text(session.machine.paths.serial_log, tail_bytes))
    fmt = session.profile.crash_format
    reports = parse_crashes(text, [fmt] if fmt else None)
    if near is not None:
        holding = [report for report in reports if any(near.strip() in line for line in report.lines)]
        if holding:
            return holding[-1]
    patterns = session.profile.crash_patterns
    # A profile may match any line of the dump (a panic's first line, an exception's last).
    for report in reports:
        body = "\n".join(report.lines)
        if not patterns or any(re.search(p, body, re.MULTILINE) for p in patterns):
            return report
    return None


def drain_console(console: WatchedConsole, seconds: float) -> None:
    """Let the guest run `seconds` while reading what it prints, so its UART never backs up.

    Crash patterns are not watched here: triage reads any crash from the serial log afterwards."""
    started = time.monotonic()
    try:
        console.inner.drain(seconds)
    except TimeoutError:
        pass
    except Exception:  # the console closed (QEMU gone: the next QMP call says so) or saw a crash line
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))


def _sample(session: TriageTarget, options: TriageOptions, problems: list[str]) -> list[VcpuSnapshot]:
    qmp = session.machine.qmp
    try:
        return sample_vcpus(qmp, samples=options.samples, interval=options.interval,
                            between=lambda seconds: drain_console(session.console, seconds))  # fmt: skip
    except (HilError, TimeoutError) as err:
        problems.append(f"vCPU sampling failed: {err}")
        return []


def _symbols(session: TriageTarget, options: TriageOptions, problems: list[str]) -> SymbolTable | None:
    try:
        table = resolve_symbols(session, fetch=options.fetch_symbols)
    except Exception as err:  # symbols are a bonus; the samples stand without them
        problems.append(f"no symbols: {err!r}")
        return None
    if table is None:
        problems.append("no symbols for this kernel (addresses are shown bare)")
    return table


def _locate_all(snapshots: list[VcpuSnapshot], symbols: SymbolTable | None) -> dict[int, list[Sample]]:
    per_cpu: dict[int, list[Sample]] = {}
    for snapshot in snapshots:
        for registers in snapshot.registers:
            per_cpu.setdefault(registers.cpu, []).append(locate(registers, symbols))
    return per_cpu


def _guest_panicked(session: TriageTarget) -> bool:
    return any(event.name == "GUEST_PANICKED" for event in session.machine.qmp.events)


def _dump_memory(session: TriageTarget, problems: list[str]) -> str | None:
    path = Path(session.run_dir) / MEMORY_DUMP
    try:
        session.machine.qmp.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{path}"}, timeout=600)
    except (HilError, TimeoutError) as err:
        problems.append(f"dump-guest-memory failed: {err}")
        return None
    return MEMORY_DUMP


def tail_text(path: Path, size: int) -> str:
    try:
        with open(path, "rb") as stream:
            stream.seek(max(0, stream.seek(0, 2) - size))
            return stream.read().decode("utf-8", "replace")
    except OSError:
        return ""


# --- the written report ---------------------------------------------------------------------------------------


def write_hang_report(report: HangReport, run_dir: Path) -> None:
    (Path(run_dir) / HANG_JSON).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    (Path(run_dir) / HANG_TEXT).write_text(render_hang(report))


def render_hang(report: HangReport) -> str:
    stall = report.stall
    lines = [f"hang in {report.place.kind} '{report.place.name}'"]
    if stall:
        lines[0] += f": {stall.get('why', 'no progress')}"
        if stall.get("last_progress_line"):
            age = stall.get("last_progress_age_s")
            lines.append(f"last progress: {stall['last_progress_line']!r} ({age} s before)")
    lines += [
        f"classification: {report.summary()}",
        f"signature: {report.signature}",
        f"symbols: {report.symbols or 'none'}",
    ]
    if report.guest_panicked:
        lines.append("QEMU reported GUEST_PANICKED")
    if report.crash:
        lines.append(f"the console shows a crash first: {report.crash.signature}")
    lines += [f"note: {problem}" for problem in report.problems]
    threads = report.snapshots[0].threads if report.snapshots else {}
    for cpu in report.classification.cpus:
        lines.append("")
        state = f"{cpu.state} in {cpu.function}" if cpu.function else cpu.state
        lines.append(f"vCPU {cpu.cpu} (host thread {threads.get(cpu.cpu, '?')}): {state}, idle {cpu.idle_share:.0%}")
        for snapshot, sample in zip(report.snapshots, report.samples.get(cpu.cpu, []), strict=False):
            regs = sample.registers
            flags = f"CPL{regs.cpl}" + (" HLT" if regs.halted else "")
            lines.append(f"  t={snapshot.seconds:6.3f}  rip={regs.rip:016x}  {sample.location:<48} {flags}")
    lines += ["", "last console lines:", *(f"  | {line}" for line in report.last_lines[-25:])]
    return "\n".join(lines) + "\n"
