"""`hil run`: run a scenario with live progress, then print the timeline, the steps and the verdict."""

from __future__ import annotations

import argparse
import time

from rich.console import Console as Terminal
from rich.status import Status
from rich.table import Table

from hil.errors import UsageError
from hil.guest.stages import StageMark
from hil.results import RunResult, StepResult, StepStatus, Verdict
from hil.runner import RunObserver, RunOptions, run_scenario
from hil.runset import runset_command, runset_requested, single_run_reports
from hil.scenario import load_scenario

VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "crash": "bold red", "hang": "bold magenta",
                 "infra": "bold yellow"}  # fmt: skip


STEP_STYLE = {StepStatus.PASS: "green", StepStatus.INTERRUPTED: "yellow"}


class LiveObserver(RunObserver):
    """Shows the current phase as a spinner and prints each stage and step as it completes."""

    def __init__(self, terminal: Terminal, status: Status) -> None:
        self.terminal = terminal
        self.status = status
        self.started = time.monotonic()
        self.result: RunResult | None = None

    def phase(self, text: str) -> None:
        self.status.update(f"{text}  [dim]{time.monotonic() - self.started:5.1f} s[/]")
        if text.startswith("accelerator:"):
            self.terminal.print(text)

    def stage(self, mark: StageMark) -> None:
        when = f"{mark.seconds:6.2f} s" if mark.seconds is not None else "   -    "
        self.terminal.print(f"  stage [bold]{mark.name:<10}[/] {when}  {mark.status}")

    def step(self, result: StepResult) -> None:
        style = STEP_STYLE.get(result.status, "red")
        self.terminal.print(f"  step  [{style}]{result.status:<4}[/] {result.name}  [dim]{result.reason}[/]")
        if result.cases:
            self.terminal.print(cases_table(result))

    def ended(self, result: RunResult) -> None:
        self.result = result
        for cut in (step for step in result.steps if step.status == StepStatus.INTERRUPTED):
            self.step(cut)  # never printed as it ran: it did not finish


KEY_METRICS = ("iops", "lat_p50_us", "lat_p99_us", "ooo")


def cases_table(result: StepResult) -> Table:
    """A probe's cases, one row each, with the metrics people compare across kernels (those present)."""
    present = [name for name in KEY_METRICS if any(name in case.get("metrics", {}) for case in result.cases)]
    table = Table(show_edge=False, pad_edge=False, box=None)
    table.add_column("  #")
    table.add_column("case", no_wrap=True)
    table.add_column("status")
    for name in present:
        table.add_column(name, justify="right")
    table.add_column("reason", overflow="fold")
    for case in result.cases:
        metrics = case.get("metrics", {})
        style = "green" if case["status"] in ("pass", "skip") else "yellow" if case.get("allowed_failure") else "red"
        status = "known" if case.get("allowed_failure") else case["status"]
        values = [_metric(metrics.get(name)) for name in present]
        table.add_row(f"  {case['number']}", case["name"], f"[{style}]{status}[/]", *values, case["reason"])
    return table


def _metric(metric: dict | None) -> str:
    if not metric:
        return ""
    value = metric["value"]
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:g}"


def run_command(args: argparse.Namespace, terminal: Terminal) -> int:
    from hil.tokio.cli import TOKIO_SCENARIO, run_tokio

    if args.scenario == [TOKIO_SCENARIO]:  # a matrix of examples x smp, not a TOML scenario
        return run_tokio(args, terminal)
    if runset_requested(args):
        return runset_command(args, terminal)
    if not args.scenario:
        raise UsageError("name a scenario (e.g. `hil run boot`) or a suite (`hil run --suite gate`)")
    scenario = load_scenario(args.scenario[0])
    options = RunOptions(
        guest=args.guest,
        image=args.image,
        smp=args.smp[0] if args.smp else None,
        memory_mb=args.memory,
        accel=args.accel,
        timeout_factor=args.timeout_factor,
        report_dir=args.report_dir,
        keep=args.keep,
        append=args.append,
        extra_initrd=tuple(args.initrd_overlay),
        qemu_binary=args.qemu,
        packages=args.packages,
        kernel=args.kernel,
        initfs=args.initfs,
        snapshot=args.snapshot,
        dump_guest_memory=getattr(args, "dump_guest_memory", False),
    )
    terminal.print(f"hil run [bold]{scenario.name}[/] on guest [bold]{options.guest or scenario.guest}[/]")
    with terminal.status("preparing") as status:
        observer = LiveObserver(terminal, status)
        try:
            result = run_scenario(scenario, options, observer)
        finally:  # a run stopped by a signal or Ctrl-C still says what it got to and where its report is
            status.stop()
            if observer.result is not None:
                print_result(terminal, observer.result)
                single_run_reports(args, observer.result.run_dir, terminal)
    return result.verdict.exit_code


def print_result(terminal: Terminal, result: RunResult) -> None:
    if result.timeline and result.verdict != Verdict.PASS:
        terminal.print(timeline_table(result))
    style = VERDICT_STYLE[str(result.verdict)]
    terminal.print(f"verdict: [{style}]{result.verdict}[/]  {result.reason}", soft_wrap=True)
    for line in result.details.get("hang", result.details.get("crash", {})).get("last_lines", [])[-15:]:
        terminal.print(f"  [dim]| {line}[/]", markup=True, highlight=False)
    snapshot = result.details.get("snapshot")
    if snapshot:
        terminal.print(f"snapshot {snapshot['key']}: {_snapshot_words(snapshot)}")
    if result.kept:
        kept = result.kept
        terminal.print(f"VM kept running (pid {kept['pid']}). Attach: [bold]hil console {result.run_dir}[/]")
        terminal.print(f"  QMP shell: hil console --qmp {result.run_dir};  stop: hil console --stop {result.run_dir}")
        if kept.get("ssh_port"):
            terminal.print(f"  SSH: port {kept['ssh_port']} on 127.0.0.1 (user root, key from `hil image reference`)")
    terminal.print(f"report: {result.run_dir / 'report.json'}  ({result.duration:.1f} s)")


def _snapshot_words(info: dict) -> str:
    if info.get("restored"):
        return f"restored in {info['restore_seconds']:.2f} s"
    if "unsupported" in info:
        return f"not possible, booted cold ({info['unsupported']})"
    return f"booted cold and saved in {info['saved_seconds']:.2f} s"


def timeline_table(result: RunResult) -> Table:
    table = Table(title="boot stages", show_edge=False)
    for column in ("stage", "at (s)", "budget (s)", "status"):
        table.add_column(column)
    assert result.timeline is not None
    for mark in result.timeline.marks:
        seconds = f"{mark.seconds:.2f}" if mark.seconds is not None else "-"
        table.add_row(mark.name, seconds, f"{mark.budget:.0f}", mark.status)
    return table
