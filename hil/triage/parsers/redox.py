"""Redox kernel crash text: exception dumps, kernel panics and signals, as Redox kernels print them on serial.

An exception dump of today's x86-64 kernel (seen here from a real kernel booting a faulting initfs):

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
lines, `CPU #n, CID 0x...` (older kernels: `CPU n`), `NAME: x, DEBUG ID: n` and `HALT`.

Older formats, from public reports: aarch64 kernels print `FATAL: Not an SVC induced synchronous exception
(ty=100100)` (ty is the ESR's exception class in binary) and X0..X30, ELR_EL1, FAR_EL1; 2017 kernels
`Protection fault: 0 at 23:000000000051EE42` (CS:RIP), a `TRACE:` list, `SIGNAL 11, CPU 0, PID
ContextId(47)` and `NAME file:/bin/ion`, and panicked with `PANIC: message`, `FILE: path`, `LINE: n`;
2015-16 kernels `INT E: Page fault` after `PID 12: file:/apps/login/main.bin`, with 32-bit register pairs on
a line (`CS:  00000008    IP:  00123903`), sometimes behind a `[163.879] DEBUG` log prefix.

The backtrace of an exception starts in the exception handler, which says nothing about the bug; the top
meaningful frame skips it. A fault in user mode has only handler frames: it is placed by the process instead
(`user:bootstrap`). A process is named by its program's base name (`/scheme/initfs/bin/nulld` and `[nulld]`
are both `nulld`), so a signature holds no PID, context id, CPU number or address and stays the same across
boots.
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
# aarch64's exception classes (ESR_EL1 bits 31:26), as the kernel's `ty=` gives them.
AARCH64_CLASSES = {
    0x00: "Undefined instruction", 0x0E: "Illegal execution state", 0x20: "Instruction abort",
    0x21: "Instruction abort", 0x22: "PC alignment fault", 0x24: "Data abort", 0x25: "Data abort",
    0x26: "SP alignment fault", 0x2C: "Floating point exception", 0x3C: "Breakpoint (BRK)",
}  # fmt: skip
PAGE_FAULT_ACCESS = (("ID", "exec"), ("WR", "write"))  # the error code's flags; neither: a read

# 2016 kernels' log prefix; getty's prompt when the kernel's next line lands after it on the same line.
_LOG_PREFIX = re.compile(r"^(?:\[\s*\d+\.\d+\]\s+(?:DEBUG|INFO|WARN|ERROR)\s+|redox login: (?=\S))")
_FAULT = re.compile(r"^\s*(?:INT [0-9A-F]{1,2}: )?(?P<name>" + "|".join(map(re.escape, FAULT_NAMES))
                    + r")\b:?(?P<rest>.*)$")  # fmt: skip
_AT_CS_RIP = re.compile(r"\bat (?P<cs>[0-9A-Fa-f]{1,4}):(?P<rip>[0-9A-Fa-f]{8,16})\b")
_AARCH64 = re.compile(r"FATAL: (?P<what>.*?exception)\s*\(ty=(?P<ty>[01]+)\)")
_PANIC = re.compile(r"^\s*KERNEL PANIC: (?P<message>.*)$")
_OLD_PANIC = re.compile(r"^\s*PANIC: (?P<message>.*)$")
_OLD_FILE = re.compile(r"^\s*FILE: (?P<path>\S+)")
_REGISTER_LINE = re.compile(r"^\s*(?:[A-Z][A-Z0-9_]{0,7}:?\s+(?:0x)?[0-9A-Fa-f]{1,16}\s*)+$")
_REGISTER = re.compile(r"(?P<name>[A-Z][A-Z0-9_]{0,7}):?\s+(?P<value>(?:0x)?[0-9A-Fa-f]{1,16})\b")
_NOT_REGISTERS = ("TRACE", "FP", "PC", "LINE", "CPU", "PID")
_FRAME = re.compile(r"^\s*FP (?P<fp>[0-9a-fA-F]+): PC (?P<pc>[0-9a-fA-F]+)\s*$")
_SYMBOL_OFFSET = re.compile(r"^\s*[0-9A-Fa-f]{16}\+[0-9A-Fa-f]+\s*$")
_SYMBOL = re.compile(r"^\s{2,}(?P<name>\S.*?)\s*$")  # demangled names may hold spaces (`<T as Trait>`)
_TRACE_END = re.compile(r"^\s*[0-9a-fA-F]{16}: (?:GUARD PAGE|EMPTY RETURN)")
_TRACE = re.compile(r"^\s*(?:TRACE: [0-9a-fA-F]+|[0-9a-fA-F]{16}: [0-9a-fA-F]{16}|FP [0-9a-fA-F]+: PC )")
_UNHANDLED = re.compile(r"UNHANDLED EXCEPTION, CPU #?(?P<cpu>\d+), PID (?P<pid>\d+), NAME (?P<name>.*?), CONTEXT")
_OLD_SIGNAL = re.compile(r"SIGNAL (?P<signal>\d+), CPU (?P<cpu>\d+), PID ContextId\((?P<pid>\d+)\)")
_OLD_NAME = re.compile(r"^\s*(?:\S+:\w+ -- )?NAME (?P<name>[^\s,:][^\s,]*)\s*$")
_PID_LINE = re.compile(r"^\s*PID (?P<pid>\d+): (?P<name>\S+)")  # 2015-16, before the fault
_PANIC_CPU = re.compile(r"^\s*CPU #?(?P<cpu>\d+), CID ")
_PANIC_NAME = re.compile(r"^\s*NAME: (?P<name>.*?), DEBUG ID: (?P<pid>\d+)")
_END = re.compile(r"UNHANDLED EXCEPTION|^\s*HALT\s*$|^\s*LINE: \d+")
_SOURCE = re.compile(r"(?P<path>[\w/.-]+\.rs):\d+(?::\d+)?")
# A program's Rust panic: `thread 'main' (1) panicked at src/bin/getty.rs:121:6:` with the message on the next
# line (older: `thread 'main' panicked at 'message', src/smolnetd/main.rs:163:8`), then `Abort` or a backtrace note.
_PROGRAM_PANIC = re.compile(r"^\s*thread '[^']*'(?: \(\d+\))? panicked at (?P<where>.*)$")
_PANIC_TAIL = re.compile(r"^\s*(?:stack backtrace:|note: |Abort\s*$|relibc: abort\(\) called)")
_MESSAGE_PROGRAM = re.compile(r"^\s*(?P<name>[a-z][\w-]*): ")  # `getty: failed to create PTY: ...`
_MAX_LINES = 80
USER_SPACE_END = 0x0000_8000_0000_0000
SIGNAL_NAMES = {4: "SIGILL", 5: "SIGTRAP", 7: "SIGBUS", 8: "SIGFPE", 11: "SIGSEGV"}

_NOISE = [
    re.compile(p)
    for p in (
        r"::interrupt::exception::", r"::interrupt::handler::", r"::interrupt::trace::", r"::stack_trace$",
        r"^kernel::panic::", r"rust_begin_unwind", r"^core::panicking::", r"^core::panic::",
        r"^core::result::unwrap_failed", r"^core::option::\w*(?:expect|unwrap)\w*_failed", r"^0x",
        r"^synchronous_exception_at_el", r"InterruptStack::trace",
    )
]  # fmt: skip


def parse(text: str) -> CrashReport | None:
    lines = [_LOG_PREFIX.sub("", line) for line in text.splitlines()]
    for index in range(len(lines)):
        report = (_exception_at(lines, index) or _aarch64_at(lines, index) or _panic_at(lines, index)
                  or _old_panic_at(lines, index) or _signal_at(lines, index)
                  or _unhandled_at(lines, index) or _program_panic_at(lines, index))  # fmt: skip
        if report:
            return report
    return None


def process_name(name: str) -> str:
    """`/scheme/initfs/bin/nulld`, `file:/bin/ion`, `[nulld]` are `nulld`, `ion`; `/apps/login/main.bin` is `login`."""
    parts = [part for part in re.split(r"[/:]", name.strip().strip("[]")) if part]
    if len(parts) > 1 and parts[-1] == "main.bin":  # 2015-16: every app was /apps/<name>/main.bin
        return parts[-2]
    return parts[-1] if parts else name.strip()


# --- where a report starts ------------------------------------------------------------------------------


def _exception_at(lines: list[str], index: int) -> CrashReport | None:
    match = _FAULT.match(lines[index])
    if not match:
        return None
    rest = match["rest"].strip()
    at = _AT_CS_RIP.search(rest)
    # A fault name alone proves little (a program may print "Double fault"): registers or a CS:RIP must follow.
    if not at and not any(_registers(line) for line in lines[index + 1 : index + 5]):
        return None
    body = _body(lines, index)
    name = match["name"]
    report = CrashReport(format="redox", kind="exception", title=name, raw_title=lines[index].strip(),
                         message=scrub(rest), lines=body)  # fmt: skip
    if at:
        report.registers.update({"CS": at["cs"].lower(), "RIP": at["rip"].lower()})
    _fill(report, body, lines[max(0, index - 3) : index])
    if name == "Page fault":
        _page_fault_details(report, rest)
    return report


def _aarch64_at(lines: list[str], index: int) -> CrashReport | None:
    match = _AARCH64.search(lines[index])
    if not match or not any(_registers(line) for line in lines[index + 1 : index + 5]):
        return None
    body = _body(lines, index)
    title = AARCH64_CLASSES.get(int(match["ty"], 2), f"{match['what']} (class {int(match['ty'], 2):#x})")
    report = CrashReport(format="redox", kind="exception", title=title, raw_title=lines[index].strip(),
                         message=match["what"], lines=body)  # fmt: skip
    _fill(report, body, [])
    if "FAR_EL1" in report.registers:
        report.address = f"{int(report.registers['FAR_EL1'], 16):#x}"
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
    return _panic_report(title, lines[index], message, body)


def _old_panic_at(lines: list[str], index: int) -> CrashReport | None:
    """`PANIC: message`, then `FILE: src/...` and `LINE: n` (kernels before 2019; a paste may stop short)."""
    match = _OLD_PANIC.match(lines[index])
    if not match:
        return None
    source = next((found for line in lines[index + 1 : index + 4] if (found := _OLD_FILE.match(line))), None)
    message = match["message"].strip()
    title = f"KERNEL PANIC at {source['path']}" if source else f"KERNEL PANIC: {scrub(message)}"
    return _panic_report(title, lines[index], message, _body(lines, index))


def _signal_at(lines: list[str], index: int) -> CrashReport | None:
    """A signal sent to a context with no fault report before it (`SIGNAL 11, CPU 0, PID ContextId(17)`)."""
    match = _OLD_SIGNAL.search(lines[index])
    if not match:
        return None
    start = index
    while start > 0 and index - start < 8 and _TRACE.match(lines[start - 1]):
        start -= 1
    body = lines[start : index + 2]
    signal = int(match["signal"])
    report = CrashReport(format="redox", kind="signal", title=f"SIGNAL {signal} ({SIGNAL_NAMES.get(signal, '?')})",
                         raw_title=lines[index].strip(), lines=body, mode="user")  # fmt: skip
    _fill(report, body, [])
    report.mode = "user"  # the kernel signals user contexts
    report.frame = report.frame or (f"user:{report.process}" if report.process else None)
    return report


def _unhandled_at(lines: list[str], index: int) -> CrashReport | None:
    """`UNHANDLED EXCEPTION, ... NAME x` with no dump before it that this parser reads (a shortened paste, a
    fork's own register lines): the program and, on aarch64, the exception class are still known."""
    match = _UNHANDLED.search(lines[index])
    if not match:
        return None
    start = next((i for i in range(index - 1, max(-1, index - 4), -1) if _AARCH64.search(lines[i])), index)
    fatal = _AARCH64.search(lines[start]) if start < index else None
    title = AARCH64_CLASSES.get(int(fatal["ty"], 2), "Unhandled exception") if fatal else "Unhandled exception"
    report = CrashReport(format="redox", kind="exception", title=title, raw_title=lines[start].strip(),
                         lines=lines[start : index + 1], mode="user")  # fmt: skip
    _fill(report, report.lines, [])
    report.mode = report.mode or "user"  # the kernel goes on, ending only the faulting context
    report.frame = report.frame or (f"user:{report.process}" if report.process else None)
    return report


def _program_panic_at(lines: list[str], index: int) -> CrashReport | None:
    match = _PROGRAM_PANIC.match(lines[index])
    if not match:
        return None
    where = match["where"].strip()
    old = re.match(r"'(?P<message>.*)', (?P<source>\S+)$", where)
    message = old["message"] if old else (lines[index + 1].strip() if index + 1 < len(lines) else "")
    source = _SOURCE.search(old["source"] if old else where)
    body = lines[index : index + (2 if not old else 1)]
    for line in lines[index + len(body) : index + len(body) + 4]:
        if not _PANIC_TAIL.match(line):
            break
        body.append(line)
    path = source["path"] if source else where.rstrip(":")
    report = CrashReport(format="redox", kind="program-panic", title=f"panic at {path}",
                         raw_title=lines[index].strip(), message=message, lines=body, mode="user")  # fmt: skip
    report.process = _panicking_program(message, path)
    report.frame = f"user:{report.process}" if report.process else "user"
    return report


def _panicking_program(message: str, path: str) -> str | None:
    """Which program panicked, as well as a panic tells: its source path's (`src/bin/getty.rs`,
    `zerod/src/main.rs`, `src/smolnetd/main.rs`), else the name its message starts with (`getty: ...`); a
    library's `src/lib.rs` says nothing."""
    parts = path.split("/")
    if "bin" in parts[:-1]:
        return parts[-1].removesuffix(".rs")
    if "src" in parts and parts.index("src") > 0:
        return parts[parts.index("src") - 1]
    if len(parts) > 2 and parts[-1] == "main.rs":
        return parts[-2]
    match = _MESSAGE_PROGRAM.match(message)
    return match["name"] if match else None


def _panic_report(title: str, first: str, message: str, body: list[str]) -> CrashReport:
    report = CrashReport(format="redox", kind="kernel-panic", title=title, raw_title=first.strip(),
                         message=message, lines=body)  # fmt: skip
    _fill(report, body, [])
    report.mode = report.mode or "kernel"
    return report


def _body(lines: list[str], start: int) -> list[str]:
    body = []
    for index, line in enumerate(lines[start : start + _MAX_LINES], start):
        body.append(line)
        ends = _END.search(line) or (_OLD_NAME.match(line) and index > start and _OLD_SIGNAL.search(lines[index - 1]))
        if len(body) > 1 and ends:
            break
    return body


# --- what a report holds --------------------------------------------------------------------------------


def _fill(report: CrashReport, body: list[str], before: list[str]) -> None:
    for line in body:
        if not _FRAME.match(line):
            for name, value in _registers(line).items():
                report.registers.setdefault(name, value)
    report.backtrace = _frames(body)
    report.mode = _mode(report.registers, report.backtrace)
    _fill_context(report, [*before, *body])
    frame = first_meaningful(report.backtrace, _NOISE)
    if frame is None and report.mode == "user" and report.process:
        frame = f"user:{report.process}"
    report.frame = frame
    if "RIP" not in report.registers and "ELR_EL1" in report.registers:
        report.registers["RIP"] = report.registers["ELR_EL1"]  # where the summary says the fault was
    if "RIP" not in report.registers and "IP" in report.registers:
        report.registers["RIP"] = report.registers["IP"]


def _registers(line: str) -> dict[str, str]:
    """Every `NAME: value` on a register line (one per line on x86-64, several on 2015-16 i386 kernels)."""
    if not _REGISTER_LINE.match(line):
        return {}
    found = {m["name"]: m["value"].lower().removeprefix("0x") for m in _REGISTER.finditer(line)}
    return {name: value for name, value in found.items() if name not in _NOT_REGISTERS}


def _page_fault_details(report: CrashReport, rest: str) -> None:
    words = rest.split()
    flags = words[1:] if words else []
    report.detail = next((word for flag, word in PAGE_FAULT_ACCESS if flag in flags), "read")
    if words and re.fullmatch(r"[0-9a-fA-F]+", words[0]):
        report.address = f"{int(words[0], 16):#x}"
    elif "CR2" in report.registers:
        report.address = f"{int(report.registers['CR2'], 16):#x}"


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
        if _FRAME.match(line) or _TRACE_END.match(line) or _registers(line) or line.strip().startswith("<"):
            return None
        symbol = _SYMBOL.match(line)
        return symbol["name"] if symbol else None
    return None


def _mode(registers: dict[str, str], frames: list[str]) -> str | None:
    if "CS" in registers:
        return "user" if int(registers["CS"], 16) & 3 == 3 else "kernel"
    if "SPSR_EL1" in registers:  # aarch64: M[3:0] = 0 is EL0, user mode
        return "user" if int(registers["SPSR_EL1"], 16) & 0xF == 0 else "kernel"
    if any("at_el0" in frame for frame in frames):
        return "user"
    if "RIP" in registers:
        return "user" if int(registers["RIP"], 16) < USER_SPACE_END else "kernel"
    return None


def _fill_context(report: CrashReport, lines: list[str]) -> None:
    for line in lines:
        if match := _UNHANDLED.search(line):
            report.cpu, report.pid = int(match["cpu"]), int(match["pid"])
            report.process, report.program = process_name(match["name"]), match["name"].strip()
        elif match := _OLD_SIGNAL.search(line):
            report.cpu, report.pid = int(match["cpu"]), int(match["pid"])
        elif (match := _OLD_NAME.match(line)) or (match := _PID_LINE.match(line)):
            report.process, report.program = process_name(match["name"]), match["name"]
            if "pid" in match.groupdict():
                report.pid = int(match["pid"])
        elif match := _PANIC_CPU.match(line):
            report.cpu = int(match["cpu"])
        elif match := _PANIC_NAME.match(line):
            report.process, report.program, report.pid = process_name(match["name"]), match["name"], int(match["pid"])
