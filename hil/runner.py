"""One run of a scenario: scenario -> machine -> session -> guest profile -> verdict -> report.

Whatever happens (assertion, hang, crash, QEMU dying, Ctrl-C), the run folder keeps its artifacts and a
report.json with the verdict, and QEMU is stopped unless the user asked to keep it.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from hil.errors import HilError
from hil.guest.console import CommandTimeout, ConsoleClosed
from hil.guest.profiles import GuestOptions, GuestProfile, get_profile
from hil.guest.stages import CrashSeen, StageMark, StageTimeout, Timeline
from hil.paths import new_run_dir, private_dir
from hil.qemu.accel import AccelChoice, choose_accel
from hil.report import write_report
from hil.scenario import Scenario, Step
from hil.session import DeviceNotSeen, GuestSession, PlannedDevice
from hil.steps import StepResult, run_step
from hil.triage import outcome
from hil.triage.guest_symbols import warm_symbol_cache
from hil.triage.hang import HangPlace, TriageOptions
from hil.triage.watchdog import watch_console
from hil.verdict import Verdict

DEFAULT_FACTOR = {"tcg": 1.0, "kvm": 0.5}


@dataclass(frozen=True)
class RunOptions:
    guest: str | None = None
    image: Path | None = None
    smp: int | None = None
    memory_mb: int | None = None
    accel: str = "auto"
    timeout_factor: float | None = None
    report_dir: Path | None = None
    keep: bool = False
    append: str = ""
    extra_initrd: tuple[Path, ...] = ()
    qemu_binary: str = "qemu-system-x86_64"
    packages: str | None = None
    kernel: Path | None = None
    initfs: Path | None = None
    snapshot: bool | None = None  # None: as the scenario says
    dump_guest_memory: bool = False  # on a hang, also write guest-memory.elf (QMP dump-guest-memory)


@dataclass
class RunResult:
    scenario: str
    guest: str
    verdict: Verdict
    reason: str
    run_dir: Path
    accel: AccelChoice | None = None
    timeline: Timeline | None = None
    steps: list[StepResult] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started_wall: float = field(default_factory=time.time)
    duration: float = 0.0
    kept: dict[str, Any] | None = None


class RunObserver(Protocol):
    """What the CLI shows while a run goes on; tests pass a silent one."""

    def phase(self, text: str) -> None: ...

    def stage(self, mark: StageMark) -> None: ...

    def step(self, result: StepResult) -> None: ...


class SilentObserver:
    def phase(self, text: str) -> None:
        pass

    def stage(self, mark: StageMark) -> None:
        pass

    def step(self, result: StepResult) -> None:
        pass


def run_scenario(scenario: Scenario, options: RunOptions, observer: RunObserver | None = None) -> RunResult:
    observer = observer or SilentObserver()
    guest = options.guest or scenario.guest
    run_dir = private_dir(options.report_dir) if options.report_dir else new_run_dir(scenario.name)
    result = RunResult(scenario.name, guest, Verdict.INFRA, "", run_dir)
    started = time.monotonic()
    try:
        _run(scenario, options, guest, result, observer)
    except HilError as err:
        result.verdict, result.reason = Verdict.INFRA, str(err)
    except KeyboardInterrupt:
        result.verdict, result.reason = Verdict.INFRA, "interrupted by the user (Ctrl-C)"
        raise
    except Exception as err:  # a bug in hil: keep the evidence, call it infra, show the traceback
        result.verdict, result.reason = Verdict.INFRA, f"internal error: {err!r}"
        (run_dir / "hil-traceback.txt").write_text(traceback.format_exc())
    finally:
        result.duration = time.monotonic() - started
        write_report(result, scenario)
    return result


def _run(scenario: Scenario, options: RunOptions, guest: str, result: RunResult, observer: RunObserver) -> None:
    profile = get_profile(guest)
    guest_options = _guest_options(scenario, options)
    observer.phase("choosing the accelerator")
    result.accel = choose_accel(options.accel, profile.probe_kernel(guest_options), options.qemu_binary)
    observer.phase(f"accelerator: {result.accel.name} ({result.accel.reason})")
    guest_options = replace(guest_options, accel=result.accel.name)
    factor = options.timeout_factor or scenario.timeout_factor or DEFAULT_FACTOR[result.accel.name]
    devices = [PlannedDevice(entry.device, entry.at_boot) for entry in scenario.devices]
    snapshot = scenario.snapshot if options.snapshot is None else options.snapshot
    session = GuestSession(profile, guest_options, result.run_dir, devices=devices, factor=factor,
                           keep=options.keep, snapshot=snapshot, on_mark=observer.stage)  # fmt: skip
    result.details["ssh_port"] = session.ssh_port
    watch_console(session)  # waits end on no progress (profile patterns, probe heartbeats), not at fixed times
    triage = TriageOptions(dump_guest_memory=options.dump_guest_memory)
    try:
        observer.phase("booting")
        result.timeline = session.start()
        warm_symbol_cache(session, background=True)  # once per kernel: later hangs, even early ones, get symbols
        _run_steps(session, scenario, result, observer, triage)
    except StageTimeout as hang:
        result.verdict, result.reason, result.timeline = Verdict.HANG, str(hang), hang.timeline
        result.details["hang"] = {"stage": hang.stage, "waited": round(hang.waited, 3), "budget": hang.budget,
                                  "last_lines": hang.last_lines}  # fmt: skip
        outcome.hang_found(session, result, HangPlace("stage", hang.stage), triage)
    except CrashSeen as crash:
        result.verdict, result.reason = Verdict.CRASH, str(crash)
        result.timeline = crash.timeline or result.timeline or session.timeline
        result.details["crash"] = {"stage": crash.stage, "line": crash.line, "pattern": crash.pattern,
                                   "last_lines": crash.last_lines}  # fmt: skip
        outcome.crash_seen(session, result, crash.line)
    except DeviceNotSeen as err:
        result.verdict, result.reason = Verdict.FAIL, str(err)
    except ConsoleClosed as err:
        _guest_gone(session, profile, result, str(err))
    except (TimeoutError, CommandTimeout) as err:  # the shell never answered after the last stage
        result.verdict, result.reason = Verdict.HANG, f"no shell after boot: {err}"
        result.details["hang"] = {"stage": "shell", "last_lines": session.console.recent_lines()}
        outcome.hang_found(session, result, HangPlace("shell", "prompt"), triage)
    finally:
        if session.snapshot_info:
            result.details["snapshot"] = session.snapshot_info
        session.close()
        if options.keep:
            result.kept = _kept_info(session)


def _guest_options(scenario: Scenario, options: RunOptions) -> GuestOptions:
    return GuestOptions(
        image=options.image,
        smp=options.smp or scenario.smp,
        memory_mb=options.memory_mb or scenario.memory_mb,
        append=f"{scenario.append} {options.append}".strip(),
        extra_initrd=options.extra_initrd,
        qemu_binary=options.qemu_binary,
        packages=options.packages,
        kernel=options.kernel,
        initfs=options.initfs,
        initfs_probe=scenario.initfs_probe,
    )


def _run_steps(
    session: GuestSession, scenario: Scenario, result: RunResult, observer: RunObserver, triage: TriageOptions
) -> None:
    result.verdict, result.reason = Verdict.PASS, "all steps passed"

    def on_hang(hung: StepResult) -> None:  # runs before anything touches the hung guest
        result.verdict, result.reason = Verdict.HANG, f"step '{hung.name}': {hung.reason}"
        result.details["hang"] = {"step": hung.name, "last_lines": session.console.recent_lines()}
        outcome.hang_found(session, result, HangPlace("step", hung.name), triage)

    for step in scenario.steps:
        # The run ends at a hung step: no shell resync (on a dead shell it would only add its own timeout).
        done = run_step(session, _expand(step, session.machine.spec.smp), on_hang=on_hang, recover=False)
        result.steps.append(done)
        observer.step(done)
        if done.status == "hang":
            return
        if done.status == "fail" and result.verdict == Verdict.PASS:
            result.verdict, result.reason = Verdict.FAIL, f"step '{step.name}': {done.reason}"
            outcome.step_failed(result, step.name)


def _expand(step: Step, smp: int) -> Step:
    """Fill the placeholders a scenario may use in its strings ({smp})."""
    params = {k: v.replace("{smp}", str(smp)) if isinstance(v, str) else v for k, v in step.params.items()}
    return replace(step, params=params)


def _guest_gone(session: GuestSession, profile: GuestProfile, result: RunResult, why: str) -> None:
    """QEMU exited under us: what the guest asked for (a panic, its own power-off or reset, isa-debug-exit)
    gets the guest's verdict; anything else is infra."""
    process = session.machine.process
    code = process.wait(2) if process else None
    stderr = process.stderr_text().strip() if process else ""
    result.details["qemu_exit"] = {"status": code, "stderr": stderr[-2000:]}
    if not outcome.guest_gone(session, result, code):
        result.verdict, result.reason = Verdict.INFRA, f"{why}; QEMU exit status {code}: {stderr[-300:]}"


def _kept_info(session: GuestSession) -> dict[str, Any]:
    process = session.machine.process
    return {
        "pid": process.pid if process else None,
        "qmp_socket": str(session.machine.paths.qmp_socket),
        "serial_socket": str(session.machine.paths.serial_socket),
        "ssh_port": session.ssh_port,
    }
