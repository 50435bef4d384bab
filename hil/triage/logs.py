"""What hil would say about a saved serial log: its boot stages, every crash and program fault, the verdict.

`hil triage LOG` reads a log a user saved (a serial.log of a run, QEMU's `-serial stdio` output, a paste from
an issue), walks the guest profile's stages over it, parses every crash and fault report in it, and judges as
a run would: a kernel panic or a fault that ends the run is a crash; a program's fault the guest went on
after is a crash unless allowed (`--allow nulld`); a log that ends before the last stage is a hang there
(a run would have called it one once that stage's budget passed); else a pass.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console as Terminal
from rich.markup import escape
from rich.table import Table

from hil.errors import UsageError
from hil.guest.ansi import strip_ansi
from hil.guest.profiles import GuestProfile, get_profile, guess_guest, profile_names
from hil.guest.stages import StageMark, StageTimeout, walk_stages
from hil.results import Verdict, fault_allowed
from hil.triage.crash import CrashReport
from hil.triage.parsers import parse_crashes


@dataclass
class LoggedFault:
    """A crash or a program's fault found in a log."""

    summary: str
    title: str
    kind: str
    process: str | None
    mode: str | None
    signature: str
    ends_run: bool  # a panic, a fault in the kernel or of a program the guest cannot go on without
    allowed: bool = False
    line: str = ""  # its report's first line


@dataclass
class LogTriage:
    guest: str
    stages: list[StageMark]
    faults: list[LoggedFault] = field(default_factory=list)
    verdict: Verdict = Verdict.PASS
    reason: str = ""
    signature: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "guest": self.guest,
            "verdict": str(self.verdict),
            "reason": self.reason,
            "signature": self.signature,
            "stages": [{"name": m.name, "status": m.status, "line": m.line} for m in self.stages],
            "faults": [asdict(fault) for fault in self.faults],
        }


def triage_log(text: str, guest: str | None = None, allow: Sequence[str] = ()) -> LogTriage:
    plain = strip_ansi(text.replace("\r\n", "\n"))
    profile = get_profile(guest or guess_guest(plain))
    result = LogTriage(profile.name, walk_log(plain, profile))
    formats = [profile.crash_format] if profile.crash_format else None
    result.faults = [_logged(report, profile, allow) for report in parse_crashes(plain, formats)]
    _judge(result)
    return result


def walk_log(text: str, profile: GuestProfile) -> list[StageMark]:
    """The profile's stages over a finished log: reached (with the line), missed, or not reached."""
    try:
        marks = walk_stages(_LogReader(text), profile.stages, 0.0).marks
    except StageTimeout as stuck:
        marks = stuck.timeline.marks
    for mark in marks:
        mark.seconds = None  # a saved log has no clock
        if mark.status in ("stuck", "pending"):
            mark.status = "not reached"
    return marks


class _LogReader:
    """The stage walker's console over a finished text: what is not in it never arrives."""

    def __init__(self, text: str) -> None:
        self.text, self.position = text, 0

    def expect(self, patterns: list[re.Pattern[str]], timeout: float) -> tuple[int, re.Match[str]]:
        found = [(m.start(), index, m) for index, p in enumerate(patterns) if (m := p.search(self.text, self.position))]
        if not found:
            raise TimeoutError("the log ends")
        _, index, match = min(found, key=lambda item: (item[0], item[1]))
        self.position = match.end()
        return index, match

    def recent_lines(self, count: int = 40) -> list[str]:
        return self.text[: self.position].splitlines()[-count:]


def _logged(report: CrashReport, profile: GuestProfile, allow: Sequence[str]) -> LoggedFault:
    ends_run = profile.fault_ends_run(report)
    allowed = not ends_run and fault_allowed(list(allow), report.process, report.title)
    return LoggedFault(report.summary, report.title, report.kind, report.process, report.mode, report.signature,
                       ends_run, allowed, report.lines[0].strip() if report.lines else "")  # fmt: skip


def _judge(result: LogTriage) -> None:
    fatal = next((fault for fault in result.faults if fault.ends_run), None)
    unallowed = [fault for fault in result.faults if not fault.ends_run and not fault.allowed]
    missing = next((mark for mark in result.stages if mark.status == "not reached"), None)
    if fatal is not None:
        result.verdict, result.reason, result.signature = Verdict.CRASH, fatal.summary, fatal.signature
    elif unallowed:
        first = unallowed[0]
        more = f"; {len(unallowed)} programs' faults in all" if len(unallowed) > 1 else ""
        result.verdict, result.signature = Verdict.CRASH, first.signature
        result.reason = f"{first.summary} (a program's fault; the guest went on){more}"
    elif missing is not None:
        result.verdict, result.signature = Verdict.HANG, f"hang:log-ends:stage:{missing.name}"
        result.reason = f"the log ends before stage '{missing.name}'"
    else:
        result.reason = "every stage reached, no crash"


# --- the command line -------------------------------------------------------------------------------------


def triage_command(args: Any, terminal: Terminal) -> int:
    """`hil triage LOG [--guest G] [--allow P] [--json]`: exits as `hil run` would for the verdict."""
    text = _read_log(args.log)
    if args.guest is not None and args.guest not in profile_names():
        raise UsageError(f"--guest {args.guest}: not a known guest. Fix: use one of {', '.join(profile_names())}")
    result = triage_log(text, args.guest, args.allow)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_log_triage(terminal, result, args.log)
    return result.verdict.exit_code


def _read_log(path: Path) -> str:
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as err:
        raise UsageError(f"{path}: cannot read the log ({err.strerror or err}). Fix: give a log file") from None
    return data.decode("utf-8", "replace")


def print_log_triage(terminal: Terminal, result: LogTriage, path: Path) -> None:
    terminal.print(f"{escape(str(path))} as guest {result.guest}")
    table = Table(show_edge=False)
    for column in ("stage", "status", "line"):
        table.add_column(column, overflow="fold")
    for mark in result.stages:
        style = {"reached": "green", "missed": "yellow"}.get(mark.status, "red")
        table.add_row(mark.name, f"[{style}]{mark.status}[/]", escape(mark.line))
    terminal.print(table)
    for fault in result.faults:
        what = "crash" if fault.ends_run else "known fault" if fault.allowed else "fault"
        terminal.print(f"  {what}: {escape(fault.summary)}")
        terminal.print(f"    [dim]signature {escape(fault.signature)}[/]")
    style = {"pass": "bold green", "hang": "bold magenta"}.get(str(result.verdict), "bold red")
    terminal.print(f"verdict: [{style}]{result.verdict}[/]  {escape(result.reason)}", soft_wrap=True)
