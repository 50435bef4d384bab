"""Turning what triage finds into a run's verdict, reason, signature and report fields.

The runner calls these at its hang / crash / QEMU-gone branches; each fills `result.details` (`hang`,
`crash`, `signature`) and may change the verdict: a hang whose guest printed a crash (or raised
GUEST_PANICKED) first is a crash; an unexpected QEMU exit is infra only when the guest did not ask for it.
The signature (`hang:livelock:fn`, `hang:deadlock/idle:stage:ready`, `crash:<title>:<frame>`,
`fail:step:<name>`) is what `hil bisect` compares between runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hil.guest.ansi import strip_ansi
from hil.triage.collect import collect_crash, explain_exit
from hil.triage.crash import scrub
from hil.triage.hang import HangPlace, TriageOptions, tail_text, triage_hang
from hil.verdict import Verdict

if TYPE_CHECKING:
    from hil.runner import RunResult


def hang_found(session: Any, result: RunResult, place: HangPlace, options: TriageOptions) -> None:
    """Sample and classify the hung guest; if it printed a crash (or panicked) first, the verdict is crash."""
    stall = getattr(session.console, "last_stall", None)
    report = triage_hang(session, place, stall=stall.as_dict() if stall else None, options=options)
    result.details.setdefault("hang", {}).update(report.as_dict())
    if stall is not None:
        result.reason += f" ({stall.why})"
    if report.crash is None and not report.guest_panicked:
        result.reason += f"; {report.summary()}"
        result.details["signature"] = report.signature
        return
    crash = report.crash or collect_crash(session, strict=True)
    title = crash.raw_title if crash else "QEMU reported GUEST_PANICKED"
    result.verdict, result.reason = Verdict.CRASH, f"{title} (then no progress in {place})"
    result.details["crash"] = {**crash.as_dict(), "last_lines": report.last_lines} if crash else {}
    result.details["signature"] = crash.signature if crash else "crash:guest-panicked:unknown"


def crash_seen(session: Any, result: RunResult, line: str) -> None:
    """After a crash line: the rest of the dump, parsed into a structured report with its signature."""
    report = collect_crash(session)
    if report is None:
        result.details["signature"] = f"crash:{scrub(line)[:120]}:unknown"
        return
    crash = result.details.setdefault("crash", {})
    crash.update({**report.as_dict(), "last_lines": session.console.recent_lines()})
    result.details["signature"] = report.signature


def guest_gone(session: Any, result: RunResult, exit_status: int | None) -> bool:
    """QEMU exited while hil needed it. False when the guest did not ask for it (the caller says infra)."""
    gone = explain_exit(session, exit_status)
    if gone.verdict == "infra":
        return False
    result.verdict, result.reason = Verdict(gone.verdict), f"{gone.reason}; QEMU exited"
    if gone.crash:
        tail = strip_ansi(tail_text(session.machine.paths.serial_log, 20000)).splitlines()[-40:]
        result.details["crash"] = {**gone.crash.as_dict(), "last_lines": tail}
    if gone.signature:
        result.details["signature"] = gone.signature
    return True


def step_failed(result: RunResult, step_name: str) -> None:
    result.details.setdefault("signature", f"fail:step:{step_name}")
