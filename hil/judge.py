"""The one mapping from what happened in a run to its verdict, reason, signature and report fields.

A run's verdict is never preset: it stays "infra, the run did not finish" until the judge sees how the run
ended. Either every step ran (`steps_finished`: pass only when all planned steps passed), or something
ended the run early (`ended_by`): a hang or crash the guest profile saw, QEMU exiting, a device that never
showed, a signal, Ctrl-C, a host problem, or a bug in hil. A step in flight at that moment is recorded as
interrupted, so report.json always says how far the run got.

The signature (`hang:livelock:fn`, `hang:deadlock/idle:stage:ready`, `crash:<title>:<frame>`,
`fail:step:<name>`) is what `hil bisect` compares between runs.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hil.errors import HilError, UsageError
from hil.guest.ansi import strip_ansi
from hil.guest.console import CommandTimeout, ConsoleClosed
from hil.guest.stages import CrashSeen, StageTimeout
from hil.results import (
    FaultEvent,
    RunResult,
    StepResult,
    StepStatus,
    Terminated,
    Verdict,
    cpus_brought_up,
    fault_allowed,
)
from hil.session import DeviceNotSeen, GuestSession
from hil.triage.collect import collect_crash, explain_exit
from hil.triage.crash import stable_text
from hil.triage.hang import HangPlace, TriageOptions, tail_text, triage_hang

TRACEBACK_FILE = "hil-traceback.txt"
# What stops hil itself: judged like everything else, then passed on so hil exits as asked.
STOPS = (Terminated, KeyboardInterrupt, SystemExit)


@dataclass
class InFlight:
    """The step running now, so an interruption can be recorded against it."""

    name: str
    kind: str
    started: float


class Judge:
    """Judges one run. `session` is set once there is one (triage needs the live guest)."""

    def __init__(
        self,
        result: RunResult,
        triage: TriageOptions | None = None,
        allowed_faults: Sequence[str] = (),
        require_all_cpus: bool = False,
    ) -> None:
        self.result = result
        self.require_all_cpus = require_all_cpus
        self.cpus_from_shell: int | None = None  # the profile's own count, when no probe gave one
        self.triage = triage or TriageOptions()
        self.allowed_faults = tuple(allowed_faults)  # `process` or `process:title`, from the scenario
        self.session: GuestSession | None = None
        self.in_flight: InFlight | None = None
        self.interrupted: InFlight | None = None  # the step an error cut short, once judged
        self._judged: BaseException | None = None
        self._given = False  # a verdict was given; a later interruption only adds to its reason

    # --- the two ways a run ends ----------------------------------------------------------------------

    def steps_finished(self, planned: int) -> None:
        """Every step that was going to run has run: the verdict follows from their statuses."""
        result, steps = self.result, self.result.steps
        self._given = True
        hung = next((step for step in steps if step.status == StepStatus.HANG), None)
        failed = next((step for step in steps if step.status == StepStatus.FAIL), None)
        if hung is not None:
            result.judged(Verdict.HANG, f"step '{hung.name}': {hung.reason}")
            result.details["hang"] = {"step": hung.name, "last_lines": self.session.console.recent_lines()}
            self._hang_found(HangPlace("step", hung.name))
        elif failed is not None:
            result.judged(Verdict.FAIL, f"step '{failed.name}': {failed.reason}")
            result.details.setdefault("signature", f"fail:step:{failed.name}")
        elif len(steps) == planned and all(step.status == StepStatus.PASS for step in steps):
            result.judged(Verdict.PASS, f"all {planned} steps passed" if planned else "booted; no steps to run")
        else:
            result.judged(Verdict.INFRA, f"only {len(steps)} of {planned} steps ran")
        self._cpus_counted()
        if result.verdict in (Verdict.PASS, Verdict.FAIL):
            self._faults_found()

    def _cpus_counted(self) -> None:
        """report.json says how many CPUs the guest brought up, when a probe counted them; fewer than the
        machine has is flagged, and fails a passing run whose scenario requires all of them."""
        online = cpus_brought_up(self.result.steps)
        if online is None:
            online = self.cpus_from_shell
        if online is None or self.session is None:
            return
        given = self.session.machine.spec.smp
        short = online < given
        self.result.details["cpus"] = {"requested": given, "online": online, "short": short}
        if short and self.require_all_cpus and self.result.verdict == Verdict.PASS:
            self.result.judged(Verdict.FAIL, f"the guest brought up {online} of {given} CPUs and the scenario "
                                             "requires all (machine.require_all_cpus)")  # fmt: skip
            self.result.details["signature"] = "fail:cpus"

    def _faults_found(self) -> None:
        """Programs' faults the guest went on after: a crash unless the scenario allows each of them."""
        faults = self._recorded_faults()
        if not faults:
            return
        first, result = faults[0], self.result
        more = f"; {len(faults)} programs' faults in all" if len(faults) > 1 else ""
        also = f"; also {result.reason}" if result.verdict == Verdict.FAIL else ""
        result.judged(Verdict.CRASH, f"{first.summary} (a program's fault; the guest went on){more}{also}")
        result.details["signature"] = first.signature

    def _recorded_faults(self) -> list[FaultEvent]:
        """Copy the session's faults into the result, marking the allowed ones; returns the others."""
        self.result.faults = list(self.session.faults) if self.session is not None else []
        for fault in self.result.faults:
            fault.allowed = fault_allowed(self.allowed_faults, fault.process, fault.title)
        return [fault for fault in self.result.faults if not fault.allowed]

    def ended_by(self, error: BaseException) -> None:
        """Something ended the run before its steps did. Judges each error once (callers may pass it up)."""
        if error is self._judged:
            return
        first, self._given, self._judged = not self._given, True, error
        self._interrupt_step(error)
        self._recorded_faults()
        if not first:  # e.g. Ctrl-C during hang triage: the first finding stands, say it was cut short
            self.result.reason += f"; then {describe_stop(error)}"
            return
        for kind, handler in _HANDLERS:
            if isinstance(error, kind):
                handler(self, error)
                return

    # --- one handler per way of ending ----------------------------------------------------------------

    def _stopped(self, error: BaseException) -> None:
        cut = self.interrupted
        where = f"during step '{cut.name}'" if cut else self._boot_phase()
        self.result.judged(Verdict.INFRA, f"{describe_stop(error)} {where}")

    def _stage_timeout(self, hang: StageTimeout) -> None:
        result = self.result
        result.judged(Verdict.HANG, str(hang))
        result.timeline = hang.timeline
        result.details["hang"] = {"stage": hang.stage, "waited": round(hang.waited, 3), "budget": hang.budget,
                                  "last_lines": hang.last_lines}  # fmt: skip
        self._hang_found(HangPlace("stage", hang.stage))

    def _crash_seen(self, crash: CrashSeen) -> None:
        result = self.result
        result.judged(Verdict.CRASH, str(crash))
        result.timeline = crash.timeline or result.timeline or getattr(self.session, "timeline", None)
        result.details["crash"] = {"stage": crash.stage, "line": crash.line, "pattern": crash.pattern,
                                   "last_lines": crash.last_lines}  # fmt: skip
        report = collect_crash(self.session, near=crash.line) if self.session is not None else None
        if report is None:
            result.details["signature"] = f"crash:{stable_text(crash.line)[:120]}:unknown"
            return
        result.details["crash"].update({**report.as_dict(), "last_lines": self.session.console.recent_lines()})
        result.details["signature"] = report.signature
        result.judged(Verdict.CRASH, f"{report.summary} (during {crash.stage})")  # the fault, not the log line

    def _device_not_seen(self, error: DeviceNotSeen) -> None:
        self.result.judged(Verdict.FAIL, str(error))

    def _console_closed(self, error: ConsoleClosed) -> None:
        """QEMU exited under us: what the guest asked for (a panic, its own power-off or reset,
        isa-debug-exit) gets the guest's verdict; anything else is infra."""
        result = self.result
        process = self.session.machine.process if self.session is not None else None
        code = process.wait(2) if process else None
        stderr = process.stderr_text().strip() if process else ""
        result.details["qemu_exit"] = {"status": code, "stderr": stderr[-2000:]}
        gone = explain_exit(self.session, code) if self.session is not None else None
        if gone is None or gone.verdict == Verdict.INFRA:
            said = f"; QEMU said: {stderr[-300:]}" if stderr else ""
            result.judged(Verdict.INFRA, f"{error}; QEMU exit status {code}{said}")
            return
        result.judged(gone.verdict, f"{gone.reason}; QEMU exited")
        if gone.crash:
            tail = strip_ansi(tail_text(self.session.machine.paths.serial_log, 20000)).splitlines()[-40:]
            result.details["crash"] = {**gone.crash.as_dict(), "last_lines": tail}
        if gone.signature:
            result.details["signature"] = gone.signature

    def _no_shell(self, error: BaseException) -> None:
        """The shell never answered after the last stage."""
        if self.session is None:  # a host-side wait (a download, a socket) before any guest existed
            self.result.judged(Verdict.INFRA, f"timed out before the guest started: {error}")
            return
        self.result.judged(Verdict.HANG, f"no shell after boot: {error}")
        self.result.details["hang"] = {"stage": "shell", "last_lines": self.session.console.recent_lines()}
        self._hang_found(HangPlace("shell", "prompt"))

    def _usage(self, error: UsageError) -> None:
        self.result.judged(Verdict.INFRA, f"usage error: {error}")
        self.result.usage_error = True

    def _host_problem(self, error: HilError) -> None:
        self.result.judged(Verdict.INFRA, str(error))

    def _bug(self, error: BaseException) -> None:
        """A bug in hil: keep the evidence, call it infra, keep the traceback beside the report."""
        self.result.judged(Verdict.INFRA, f"internal error: {error!r}")
        text = "".join(traceback.format_exception(error))
        (self.result.run_dir / TRACEBACK_FILE).write_text(text)

    # --- helpers --------------------------------------------------------------------------------------

    def _hang_found(self, place: HangPlace) -> None:
        """Sample and classify the hung guest; if it printed a crash (or panicked) first, the verdict is crash."""
        result, session = self.result, self.session
        stall = getattr(session.console, "last_stall", None)
        report = triage_hang(session, place, stall=stall.as_dict() if stall else None, options=self.triage)
        result.details.setdefault("hang", {}).update(report.as_dict())
        if stall is not None:
            result.reason += f" ({stall.why})"
        faults = self._recorded_faults()
        if report.crash is None and not report.guest_panicked and faults:  # a program died, then nothing moved
            result.judged(Verdict.CRASH, f"{faults[0].summary} (then no progress in {place})")
            result.details["signature"] = faults[0].signature
            return
        if report.crash is None and not report.guest_panicked:
            result.reason += f"; {report.summary()}"
            result.details["signature"] = report.signature
            return
        crash = report.crash or collect_crash(session, strict=True)
        title = crash.raw_title if crash else "QEMU reported GUEST_PANICKED"
        result.judged(Verdict.CRASH, f"{title} (then no progress in {place})")
        result.details["crash"] = {**crash.as_dict(), "last_lines": report.last_lines} if crash else {}
        result.details["signature"] = crash.signature if crash else "crash:guest-panicked:unknown"

    def _interrupt_step(self, error: BaseException) -> None:
        step, self.in_flight = self.in_flight, None
        if step is None:
            return
        self.interrupted = step
        seconds = round(time.monotonic() - step.started, 3)
        cut = StepResult(step.name, step.kind, StepStatus.INTERRUPTED, seconds, reason=describe_stop(error))
        self.result.steps.append(cut)

    def _boot_phase(self) -> str:
        if self.session is None:
            return "before the guest started"
        if self.result.timeline is None:
            return "while the guest booted"
        return "after boot, between steps"


def describe_stop(error: BaseException) -> str:
    """How to say what ended a run: a signal, Ctrl-C, or an error with its message."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted by Ctrl-C (SIGINT)"
    if isinstance(error, Terminated):
        return str(error)
    if isinstance(error, SystemExit):
        return f"hil exited (status {error.code})"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


_HANDLERS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Any], ...] = (
    (STOPS, Judge._stopped),
    (StageTimeout, Judge._stage_timeout),
    (CrashSeen, Judge._crash_seen),
    (DeviceNotSeen, Judge._device_not_seen),
    (ConsoleClosed, Judge._console_closed),
    ((TimeoutError, CommandTimeout), Judge._no_shell),
    (UsageError, Judge._usage),
    (HilError, Judge._host_problem),
    (BaseException, Judge._bug),
)
