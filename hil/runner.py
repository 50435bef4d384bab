"""One run of a scenario: scenario -> machine -> session -> guest profile -> verdict -> report.

Whatever happens (assertion, hang, crash, QEMU dying, a signal, Ctrl-C), the run folder keeps its
artifacts and a report.json with a verdict the judge (hil.judge) computed from what happened, and QEMU is
stopped unless the user asked to keep it. Signals and Ctrl-C are passed on after the report is written,
so hil exits as asked (128 + N).
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from hil.boot import Booter, BootRequest, end_session
from hil.errors import UsageError
from hil.guest.profiles import GuestOptions, get_profile, profile_names
from hil.guest.stages import StageMark
from hil.judge import STOPS, InFlight, Judge
from hil.lifetime import signals_deferred
from hil.paths import new_run_dir, private_dir, writable_dir
from hil.reports.run_report import write_report
from hil.results import FaultEvent, RunResult, StepResult, StepStatus, cpus_brought_up
from hil.scenario import Scenario, Step
from hil.session import GuestSession, PlannedDevice
from hil.steps import run_step
from hil.triage.guest_symbols import warm_symbol_cache
from hil.triage.hang import TriageOptions

BACKGROUND_STEPS = 8  # host steps running alongside the others at most
CPU_COUNT_TIMEOUT = 10.0  # seconds (times the run's factor) for the guest shell to say how many CPUs it has


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


class RunObserver(Protocol):
    """What the CLI shows while a run goes on; tests pass a silent one."""

    def phase(self, text: str) -> None: ...

    def stage(self, mark: StageMark) -> None: ...

    def step(self, result: StepResult) -> None: ...

    def fault(self, event: FaultEvent) -> None:
        """A program in the guest faulted and the guest went on."""

    def ended(self, result: RunResult) -> None:
        """The run is over and report.json written (also when a signal or Ctrl-C is still unwinding)."""


class SilentObserver:
    def phase(self, text: str) -> None:
        pass

    def stage(self, mark: StageMark) -> None:
        pass

    def step(self, result: StepResult) -> None:
        pass

    def fault(self, event: FaultEvent) -> None:
        pass

    def ended(self, result: RunResult) -> None:
        pass


def check_run(scenario: Scenario, options: RunOptions) -> None:
    """Every input of a run that can be checked without building or booting anything; a UsageError says
    which and how to fix it. run_scenario calls it before it makes the run folder."""
    if options.guest is not None and options.guest not in profile_names():
        raise UsageError(f"--guest {options.guest}: not a known guest. Fix: use one of {', '.join(profile_names())}")
    request = boot_request(scenario, options)
    get_profile(request.guest).check_options(request.options)
    if options.report_dir is not None:
        writable_dir("--report-dir", options.report_dir)


def run_scenario(scenario: Scenario, options: RunOptions, observer: RunObserver | None = None) -> RunResult:
    """Run `scenario`; mistakes in its inputs raise UsageError before anything starts, everything after
    that ends in a judged RunResult with its report.json."""
    check_run(scenario, options)
    observer = observer or SilentObserver()
    run_dir = private_dir(options.report_dir) if options.report_dir else new_run_dir(scenario.name)
    result = RunResult(scenario.name, options.guest or scenario.guest, run_dir)
    triage = TriageOptions(dump_guest_memory=options.dump_guest_memory)
    judge = Judge(result, triage, scenario.allow_faults, scenario.require_all_cpus)
    started = time.monotonic()
    try:
        _run(scenario, options, judge, observer)
    except BaseException as err:
        judge.ended_by(err)  # a no-op for an error judged already, while the guest was still there
        if isinstance(err, STOPS):
            raise
    finally:
        result.duration = time.monotonic() - started
        with signals_deferred():
            write_report(result, scenario)
        observer.ended(result)
    return result


def boot_request(scenario: Scenario, options: RunOptions) -> BootRequest:
    """What to boot for `scenario` with the user's overrides."""
    return BootRequest(
        guest=options.guest or scenario.guest,
        options=_guest_options(scenario, options),
        devices=tuple(PlannedDevice(entry.device, entry.at_boot) for entry in scenario.devices),
        accel=options.accel,
        timeout_factor=options.timeout_factor or scenario.timeout_factor,
        snapshot=scenario.snapshot if options.snapshot is None else options.snapshot,
        keep=options.keep,
    )


def _run(scenario: Scenario, options: RunOptions, judge: Judge, observer: RunObserver) -> None:
    booter = Booter(observer.phase)
    try:
        session = booter.boot(boot_request(scenario, options), judge, observer.stage, observer.fault)
        warm_symbol_cache(session, background=True)  # once per kernel: later hangs, even early ones, get symbols
        _run_steps(session, scenario, judge, observer)
    except BaseException as err:
        judge.ended_by(err)  # now, while QEMU is still there to be examined (a no-op for a judged boot)
        raise
    finally:
        if judge.session is not None:
            end_session(judge.session, judge.result)


def _guest_options(scenario: Scenario, options: RunOptions) -> GuestOptions:
    return GuestOptions(
        image=options.image,
        smp=options.smp or scenario.smp,
        memory_mb=options.memory_mb or scenario.memory_mb,
        append=f"{scenario.append} {options.append}".strip(),
        extra_initrd=options.extra_initrd,
        qemu_binary=options.qemu_binary,
        own=_own_options(scenario, options),
    )


def _own_options(scenario: Scenario, options: RunOptions) -> dict[str, object]:
    """The guest-specific options given (each profile takes the ones it knows)."""
    given = {"packages": options.packages, "kernel": options.kernel, "initfs": options.initfs,
             "initfs_probe": scenario.initfs_probe, "extras": scenario.image_extras or None,
             "devices": tuple(entry.device for entry in scenario.devices if entry.at_boot) or None,
             "console_requests": _console_requests(scenario) or None}  # fmt: skip
    return {name: value for name, value in given.items() if value is not None}


def _console_requests(scenario: Scenario) -> dict[str, str]:
    """What the first console_probe step does when its probe asks ("unplug" / "replug" -> a device id)."""
    for step in scenario.steps:
        if step.kind == "console_probe":
            asked = {"unplug": step["unplug_on_request"], "replug": step["replug_on_request"]}
            return {request: device for request, device in asked.items() if device is not None}
    return {}


def _run_steps(session: GuestSession, scenario: Scenario, judge: Judge, observer: RunObserver) -> None:
    """Run the steps in order; the run ends at a hung step (no shell resync: on a dead shell it would only
    add its own timeout). A background step runs alongside the ones after it and takes its place in the
    report when it ends. The judge then computes the verdict from what the steps did."""
    background: list[tuple[int, Future[StepResult]]] = []
    placed: list[tuple[int, StepResult]] = []
    with ThreadPoolExecutor(max_workers=BACKGROUND_STEPS, thread_name_prefix="hil-step") as pool:
        for index, step in enumerate(scenario.steps):
            expanded = _expand(step, session.machine.spec.smp)
            if step.params.get("background"):
                background.append((index, pool.submit(run_step, session, expanded, recover=False)))
                continue
            judge.in_flight = InFlight(step.name, step.kind, time.monotonic())
            done = run_step(session, expanded, recover=False)
            judge.in_flight = None
            placed.append((index, done))
            judge.result.steps.append(done)
            observer.step(done)
            if done.status == StepStatus.HANG:
                break
        for index, future in background:
            done = future.result()  # each background step is bounded by its own timeout
            placed.append((index, done))
            observer.step(done)
    judge.result.steps[:] = [done for _, done in sorted(placed, key=lambda pair: pair[0])]
    judge.cpus_from_shell = _cpus_from_shell(session, judge.result.steps)
    judge.steps_finished(planned=len(scenario.steps))


def _cpus_from_shell(session: GuestSession, steps: list[StepResult]) -> int | None:
    """The guest's CPU count from its shell, when no probe reported one and no step hung; never fails a run."""
    if cpus_brought_up(steps) is not None or any(step.status == StepStatus.HANG for step in steps):
        return None
    try:
        return session.profile.cpus_online(session.console, CPU_COUNT_TIMEOUT * session.factor)
    except Exception:  # a count is a report field, not a verdict: a shell that fails here fails nothing
        return None


def _expand(step: Step, smp: int) -> Step:
    """Fill the placeholders a scenario may use in its strings ({smp})."""
    params = {k: v.replace("{smp}", str(smp)) if isinstance(v, str) else v for k, v in step.params.items()}
    return replace(step, params=params)
