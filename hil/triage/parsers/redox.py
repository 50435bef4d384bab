"""Redox kernel crash text: exception dumps and kernel panics, as the x86-64 kernel prints them on serial.

An exception dump (seen here from a real kernel booting a faulting initfs):

    Invalid opcode fault                       (or `Page fault: 00000000DEADBEEF US`, `Protection fault code=0x..`)
    RFLAG: 0000000000000202
    CS:    000000000000002b
    RIP:   0000000000001100
    ...                                        (one line per register; FSBASE/GSBASE/KGSBASE without a colon)
      FP ffff80007fc4ff00: PC ffffffff80072346
        FFFFFFFF80072260+00E6                  (symbol start + offset; older kernels omit this line)
        kernel::arch::x86_64::interrupt::exception::invalid_opcode::inner
      0000000000000000: GUARD PAGE
    kernel::context::signal:INFO -- UNHANDLED EXCEPTION, CPU #0, PID 0, NAME [bootstrap], CONTEXT 0xffffff7f80100e50

A panic prints `KERNEL PANIC: panicked at src/...rs:L:C:` (message on the next line), the same frame
lines, `CPU n, CID 0x...`, `NAME: x, DEBUG ID: n` and `HALT`.

The backtrace of an exception starts in the exception handler, which says nothing about the bug; the top
meaningful frame skips it. A fault in user mode (CS ring 3) has only handler frames: it is placed by the
process instead (`user:bootstrap`), which stays the same across boots while addresses need not.
"""

from __future__ import annotations

import re

from hil.triage.crash import CrashReport, first_meaningful, scrub

FAULT_NAMES = (
    "Divide by zero", "Debug trap", "Non-maskable interrupt", "Breakpoint trap", "Overflow trap",
    "Bound range exceeded fault", "Invalid opcode fault", "Device not available fault", "Double fault",
    "Invalid TSS fault", "Segment not present fault", "Stack segment fault", "Protection fault", "Page fault",
    "FPU floating point fault", "Alignment check fault", "Machine check fault", "SIMD floating point fault",
    "Virtualization fault", "Security exception",
)  # fmt: skip
_FAULT = re.compile(r"^\s*(?P<name>" + "|".join(map(re.escape, FAULT_NAMES)) + r")\b:?(?P<rest>.*)$")
_PANIC = re.compile(r"^\s*KERNEL PANIC: (?P<message>.*)$")
_REGISTER = re.compile(r"^\s*(?P<name>[A-Z][A-Z0-9]{1,7}):?\s+(?P<value>[0-9a-fA-F]{16})\s*$")
_FRAME = re.compile(r"^\s*FP (?P<fp>[0-9a-fA-F]+): PC (?P<pc>[0-9a-fA-F]+)\s*$")
_SYMBOL_OFFSET = re.compile(r"^\s*[0-9A-Fa-f]{16}\+[0-9A-Fa-f]+\s*$")
_SYMBOL = re.compile(r"^\s{2,}(?P<name>\S.*?)\s*$")  # demangled names may hold spaces (`<T as Trait>`)
_TRACE_END = re.compile(r"^\s*[0-9a-fA-F]{16}: (?:GUARD PAGE|EMPTY RETURN)")
_UNHANDLED = re.compile(r"UNHANDLED EXCEPTION, CPU #(?P<cpu>\d+), PID (?P<pid>\d+), NAME (?P<name>.*?), CONTEXT")
_OLD_SIGNAL = re.compile(r"SIGNAL \d+, CPU (?P<cpu>\d+), PID ContextId\((?P<pid>\d+)\)")
_OLD_NAME = re.compile(r"INFO -- NAME (?P<name>\S.*)$")
_PANIC_CPU = re.compile(r"^\s*CPU (?P<cpu>\d+), CID ")
_PANIC_NAME = re.compile(r"^\s*NAME: (?P<name>.*?), DEBUG ID: (?P<pid>\d+)")
_END = re.compile(r"UNHANDLED EXCEPTION|^\s*HALT\s*$|INFO -- NAME ")
_SOURCE = re.compile(r"(?P<path>[\w/.-]+\.rs):\d+(?::\d+)?")
_MAX_LINES = 80
USER_SPACE_END = 0x0000_8000_0000_0000

_NOISE = [
    re.compile(p)
    for p in (
        r"::interrupt::exception::", r"::interrupt::handler::", r"::interrupt::trace::", r"::stack_trace$",
        r"^kernel::panic::", r"rust_begin_unwind", r"^core::panicking::", r"^core::panic::",
        r"^core::result::unwrap_failed", r"^core::option::\w*(?:expect|unwrap)\w*_failed", r"^0x",
    )
]  # fmt: skip


def parse(text: str) -> CrashReport | None:
    lines = text.splitlines()
    for index in range(len(lines)):
        report = _exception_at(lines, index) or _panic_at(lines, index)
        if report:
            return report
    return None


def _exception_at(lines: list[str], index: int) -> CrashReport | None:
    match = _FAULT.match(lines[index])
    # A fault name alone proves little (a program may print "Double fault"): a register dump must follow.
    if not match or not any(_REGISTER.match(line) for line in lines[index + 1 : index + 5]):
        return None
    body = _body(lines, index)
    name, rest = match["name"], match["rest"].strip()
    report = CrashReport(format="redox", kind="exception", title=name, raw_title=lines[index].strip(),
                         message=scrub(rest), lines=body)  # fmt: skip
    _fill(report, body)
    return report


def _panic_at(lines: list[str], index: int) -> CrashReport | None:
    match = _PANIC.match(lines[index])
    if not match:
        return None
    body = _body(lines, index)
    message = match["message"].strip()
    if message.endswith(":") and index + 1 < len(lines):  # Rust >= 1.73: "panicked at file:L:C:" + message line
        message = f"{message} {lines[index + 1].strip()}"
    source = _SOURCE.search(message)
    title = f"KERNEL PANIC at {source['path']}" if source else f"KERNEL PANIC: {scrub(message)}"
    report = CrashReport(format="redox", kind="kernel-panic", title=title, raw_title=lines[index].strip(),
                         message=message, lines=body)  # fmt: skip
    _fill(report, body)
    report.mode = report.mode or "kernel"
    return report


def _body(lines: list[str], start: int) -> list[str]:
    body = []
    for line in lines[start : start + _MAX_LINES]:
        body.append(line)
        if len(body) > 1 and _END.search(line):
            break
    return body


def _fill(report: CrashReport, body: list[str]) -> None:
    for line in body:
        register = _REGISTER.match(line)
        if register and not _FRAME.match(line):
            report.registers.setdefault(register["name"], register["value"].lower())
    report.backtrace = _frames(body)
    report.mode = _mode(report.registers)
    _fill_context(report, body)
    frame = first_meaningful(report.backtrace, _NOISE)
    if frame is None and report.mode == "user" and report.process:
        frame = f"user:{report.process}"
    report.frame = frame


def _frames(body: list[str]) -> list[str]:
    frames = []
    for index, line in enumerate(body):
        frame = _FRAME.match(line)
        if not frame:
            continue
        frames.append(_symbol_after(body, index + 1) or f"{int(frame['pc'], 16):#x}")
    return frames


def _symbol_after(body: list[str], index: int) -> str | None:
    """The function name printed under an FP line (after an optional `START+OFFSET` line)."""
    for line in body[index : index + 2]:
        if _SYMBOL_OFFSET.match(line):
            continue
        if _FRAME.match(line) or _TRACE_END.match(line) or _REGISTER.match(line):
            return None
        symbol = _SYMBOL.match(line)
        return symbol["name"] if symbol else None
    return None


def _mode(registers: dict[str, str]) -> str | None:
    if "CS" in registers:
        return "user" if int(registers["CS"], 16) & 3 == 3 else "kernel"
    if "RIP" in registers:
        return "user" if int(registers["RIP"], 16) < USER_SPACE_END else "kernel"
    return None


def _fill_context(report: CrashReport, body: list[str]) -> None:
    for line in body:
        if match := _UNHANDLED.search(line):
            report.cpu, report.pid, report.process = int(match["cpu"]), int(match["pid"]), match["name"].strip("[]")
        elif match := _OLD_SIGNAL.search(line):
            report.cpu, report.pid = int(match["cpu"]), int(match["pid"])
        elif match := _OLD_NAME.search(line):
            report.process = match["name"].strip()
        elif match := _PANIC_CPU.match(line):
            report.cpu = int(match["cpu"])
        elif match := _PANIC_NAME.match(line):
            report.process, report.pid = match["name"], int(match["pid"])
