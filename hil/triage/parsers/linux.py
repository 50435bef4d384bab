"""Linux crash text (x86-64): panics, oopses, BUGs, general protection faults, warnings, lockups.

Reads the console as the kernel prints it, with or without printk timestamps:

    BUG: kernel NULL pointer dereference, address: 0000000000000000
    Oops: 0002 [#1] PREEMPT SMP NOPTI
    CPU: 0 PID: 171 Comm: sh Not tainted 6.1.0-28-amd64 #1  Debian 6.1.119-1
    RIP: 0010:sysrq_handle_crash+0x16/0x20
    RSP: 0018:ffffc900006bfe20 EFLAGS: 00010246
    RAX: 0000000000000000 RBX: 0000000000000063 RCX: 0000000000000000
    Call Trace:
     <TASK>
     __handle_sysrq.cold+0x44/0x11c
     ? do_syscall_64+0x69/0xb0        (a "?" frame is a stale stack word: not part of the trace)
     </TASK>
    Kernel panic - not syncing: Fatal exception

The first crash line is the title (a panic after an oops only reports the oops); the top meaningful frame is
the first frame of RIP + call trace that is not part of reporting the crash (dump_stack, panic, the trap
handlers, printk).
"""

from __future__ import annotations

import re

from hil.triage.classify import normalize_function
from hil.triage.crash import CrashReport, first_meaningful, scrub

# What comes before the kernel's own text on a saved line: a syslog or journal prefix (`Jan  2 10:00:01 host
# kernel: `, an ISO time), a printk level (`<4>`), a timestamp (`[  12.345678]`, dmesg -H's `[ +0.000003]`,
# dmesg -T's `[Mon Jan  2 10:00:01 2024]`) and a caller id (`[  T123]`, `[ C48]`); pasted from a mail, `> `.
_QUOTE = r"(?:> ?)*"
_SYSLOG = r"(?:(?:\w{3} +\d{1,2} [\d:]{8}|\d{4}-\d\d-\d\dT[\d:.]+(?:[+-][\d:]+|Z)?) \S+ kernel: ?)"
_TIME = r"(?:\[\s*[+]?\d+\.\d+\]|\[\w{3} \w{3} [ \d]\d [\d:]{8} \d{4}\]|\[\w{3}\d\d [\d:]{5}\])"
_PREFIX = rf"^{_QUOTE}{_SYSLOG}?(?:<\d> ?)?(?:{_TIME}\s*)?(?:\[\s*[CT]\d+\]\s*)?"
_TITLES: list[tuple[str, re.Pattern[str]]] = [
    (kind, re.compile(_PREFIX + pattern))
    for kind, pattern in (
        ("panic", r"(?P<t>Kernel panic - not syncing: .*)"),
        ("lockup", r"(?:(?:NMI )?watchdog: )?(?P<t>BUG: soft lockup.*)"),
        ("lockup", r"(?P<t>(?:NMI )?[Ww]atchdog detected hard LOCKUP.*)"),
        ("bug", r"(?P<t>BUG: .*)"),
        ("bug", r"(?P<t>kernel BUG at .*)"),
        ("oops", r"(?P<t>general protection fault.*)"),
        ("oops", r"(?P<t>(?:invalid opcode|divide error|stack segment|double fault): [0-9a-f]{4}.*)"),
        ("oops", r"(?P<t>Oops: .*)"),
        ("warning", r"(?P<t>WARNING: CPU: \d+ PID: \d+ at .*)"),
        ("hung-task", r"(?P<t>INFO: task \S+ blocked for more than \d+ seconds.*)"),
        ("rcu-stall", r"(?:rcu: )?(?P<t>INFO: rcu\w* (?:self-)?detected (?:\w+ )?stalls?.*)"),
        ("ubsan", r"(?P<t>UBSAN: .*)"),
        ("oops", r"(?:traps: )?(?P<t>PANIC: double fault.*)"),
    )
]
_OLD_ADDRESS = r"(?:\[<[0-9a-f]+>\]\s+)"  # 4.x and older print each frame's address first
_RIP = re.compile(_PREFIX + rf"RIP: (?P<cs>[0-9a-f]{{4}}):{_OLD_ADDRESS}{{0,2}}(?P<at>\S+)")
_TASK = re.compile(_PREFIX + r"CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>\S+)")
_REGISTER = re.compile(r"\b(?P<name>[A-Z][A-Z0-9]{1,5}): (?:[0-9a-f]{4}:)?(?P<value>[0-9a-f]{8,16})\b")
_HUNG_TASK = re.compile(r"INFO: task (?P<comm>\S+):(?P<pid>\d+) blocked")
_CALL_TRACE = re.compile(_PREFIX + r"\s*Call Trace:")
# A frame: `fn+0x1/0x2 [module]`, with decode_stacktrace.sh's `file.c:12` or `(file.c:12)` and `[inline]`,
# or a decoded inline frame with no offset at all (`fn (file.c:12)`).
_WHERE = r"(?: \(?[\w./-]+:\d+(?::\d+)?\)?)"
_FRAME = re.compile(_PREFIX + rf"\s*{_OLD_ADDRESS}?(?P<stale>\? )?(?P<fn>[\w.$]+)"
                    rf"(?:\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[(?P<mod>\w+)\])?{_WHERE}?|{_WHERE})(?: \[inline\])?\s*$")
_TRACE_MARK = re.compile(_PREFIX + r"\s*</?(?:TASK|IRQ|NMI|SOFTIRQ|EOI)>\s*$")
_END = re.compile(r"---\[ end (?:trace|Kernel panic)")
# The task's user-mode registers, the code bytes or the end of the task part end a call trace.
_TRACE_STOP = re.compile(_PREFIX + r"\s*(?:RIP: |Code: |RSP: |</TASK>|---\[ end)")
# ...except the code bytes and registers of a kernel RIP inside the trace: its frames go on after them.
_IN_TRACE_REGISTERS = re.compile(_PREFIX + r"\s*(?:Code: |RSP: )")
_MAX_LINES = 120

_NOISE = [
    re.compile(p)
    for p in (
        r"^dump_stack\w*$", r"^show_\w+$", r"^v?panic$", r"^__warn\w*$", r"^warn_\w+$", r"^report_bug$",
        r"^handle_bug$", r"^(?:asm_)?exc_\w+$", r"^do_(?:error_)?trap$", r"^_*die\w*$", r"^oops_\w+$",
        r"^page_fault_oops$", r"^kernelmode_fixup_or_oops$", r"^_*bad_area\w*$", r"^do_user_addr_fault$",
        r"^handle_page_fault$", r"^_*v?printk\w*$", r"^_*kasan_\w+$", r"^print_report$",
        r"^check_panic_on_warn$", r"^watchdog_timer_fn$", r"^__hrtimer_run_queues$", r"^hrtimer_interrupt$",
        r"^_*schedule\w*$", r"^io_schedule\w*$", r"^entry_SYSCALL_64\w*$", r"^do_syscall_64$",
        r"^ubsan_epilogue$", r"^__ubsan_handle_\w+$", r"^rcu_dump_cpu_stacks$", r"^nmi_\w+$",
        r"^rcu_sched_clock_irq$", r"^print_cpu_stall$", r"^rcu_pending$", r"^update_process_times$", r"^tick_\w+$",
        r"^asm_call_\w*on_stack$", r"^_*lock_acquire$", r"^lock_release$", r"^_raw_(?:spin|read|write)_\w+$",
        r"^(?:asm_|__)?sysvec_\w+$", r"^(?:__)?irq_exit\w*$", r"^check_panic_on_oom$", r"^out_of_memory$",
    )
]  # fmt: skip


def parse(text: str) -> CrashReport | None:
    lines = text.splitlines()
    start, kind, raw_title = _find_title(lines)
    if start is None:
        return None
    body = _crash_lines(lines, start)
    report = CrashReport(format="linux", kind=kind, title=normalize_title(raw_title), raw_title=raw_title,
                         lines=body)  # fmt: skip
    _fill_task(report, body)
    rip_frame = _fill_registers(report, body)
    report.backtrace = _call_trace(body)
    frames = [f for f in [rip_frame, *report.backtrace] if f]
    report.frame = first_meaningful(frames, _NOISE)
    if report.mode is None:
        report.mode = "kernel"  # panics and warnings are raised by kernel code
    return report


def normalize_title(title: str) -> str:
    """`BUG: unable to handle page fault for address: ffff...` -> `BUG: unable to handle page fault`."""
    title = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "", title)
    title = re.sub(r"(, probably for non-canonical address .*|: [0-9a-f]{4} \[#\d+\].*)$", "", title)
    title = re.sub(r",? (?:for )?address:? .*$", "", title)
    title = re.sub(r"^(BUG: unable to handle kernel [\w ]+?) at \S+$", r"\1", title)  # 4.x and older
    title = re.sub(r" \[#\d+\].*$", "", title)
    title = re.sub(r"^(BUG: soft lockup) - .*$", r"\1", title)
    title = re.sub(r"^(kernel BUG at [^:]+):\d+!?$", r"\1", title)
    title = re.sub(r"^WARNING: CPU: \d+ PID: \d+ at (\S+?):\d+ (\S+).*$", r"WARNING in \2", title)
    title = re.sub(r"^INFO: task \S+ blocked for more than \d+ seconds.*$", "INFO: task hung", title)
    title = re.sub(r"^(BUG: [\w ]+): \S+/\d+/\S+$", r"\1", title)  # scheduling while atomic: sh/1/0x2
    title = re.sub(r"^(INFO: rcu)\w* (?:self-)?(detected).*$", r"\1 \2 stall", title)
    title = re.sub(r"^(UBSAN: [\w-]+) in\b.*$", r"\1", title)
    title = re.sub(r"^(PANIC: double fault),.*$", r"\1", title)
    title = re.sub(r"^((?:NMI )?[Ww]atchdog detected hard LOCKUP) on cpu \d+.*$", r"\1", title)
    title = re.sub(r"^(BUG: unable to handle kernel [\w ]+?) at$", r"\1", title)  # the address wrapped away
    return scrub(title.strip())


def _find_title(lines: list[str]) -> tuple[int | None, str, str]:
    for index, line in enumerate(lines):
        for kind, pattern in _TITLES:
            match = pattern.match(line)
            if match:
                return index, kind, match.group("t").strip()
    return None, "", ""


def _crash_lines(lines: list[str], start: int) -> list[str]:
    body = []
    for line in lines[start : start + _MAX_LINES]:
        body.append(line)
        if _END.search(line):
            break
    return body


def _fill_task(report: CrashReport, body: list[str]) -> None:
    match = next((m for line in body if (m := _TASK.match(line))), None)
    if match:
        report.cpu, report.pid, report.process = int(match["cpu"]), int(match["pid"]), match["comm"]
    elif hung := _HUNG_TASK.match(report.raw_title):  # a hung task's report names it only in its title
        report.process, report.pid = hung["comm"], int(hung["pid"])


def _fill_registers(report: CrashReport, body: list[str]) -> str | None:
    """Registers of the first register block before the call trace; returns the RIP's function."""
    rip_function = None
    for line in body:
        if _CALL_TRACE.match(line) or _FRAME.match(line):  # registers after the trace belong to user mode
            break
        rip = _RIP.match(line)
        if rip and "RIP" not in report.registers:
            report.registers["RIP"] = rip["at"]
            report.mode = "user" if int(rip["cs"], 16) & 3 else "kernel"
            rip_function = _function_of(rip["at"]) if report.mode == "kernel" else None
            continue
        for match in _REGISTER.finditer(line):
            report.registers.setdefault(match["name"], match["value"])
    return rip_function


def _function_of(location: str) -> str | None:
    match = re.match(r"([\w.$]+)\+0x", location)
    return normalize_function(match.group(1)) if match else None


def _call_trace(body: list[str]) -> list[str]:
    frames: list[str] = []
    inside = False
    for line in body:
        if _CALL_TRACE.match(line):
            inside = True
            continue
        # A UART that drops or doubles bytes under a panic can garble "Call Trace:": a frame starts it too.
        inside = inside or bool(_FRAME.match(line))
        if not inside or _TRACE_MARK.match(line):
            continue
        rip = _RIP.match(line)
        if rip and not int(rip["cs"], 16) & 3 and (where := _function_of(rip["at"])):
            frames.append(where)  # after </IRQ> or </NMI>: the kernel code the interrupt (a stall report) caught
            continue
        if _TRACE_STOP.match(line) and not _IN_TRACE_REGISTERS.match(line):
            break
        frame = _FRAME.match(line)
        if frame is None:
            continue  # a line garbled by a concurrent printer: the frames after it still count
        if not frame["stale"]:
            frames.append(normalize_function(frame["fn"]))
    return frames
