"""`hil run`: its options, how they become RunOptions (once, for single runs and every run-set cell), the
checks made before anything boots, and the live progress and verdict printed as a run goes."""

from __future__ import annotations

import argparse
import os
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console as Terminal
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.status import Status
from rich.table import Table
from rich.text import Text

from hil import argtypes
from hil.errors import UsageError
from hil.guest.stages import StageMark
from hil.paths import writable_dir, writable_file
from hil.qemu.accel import ACCELERATORS
from hil.reports import write_reports
from hil.reports.live import live_progress
from hil.reports.summary import print_summary
from hil.reports.terminal import listing
from hil.results import RUNSET_NAME, Cell, FaultEvent, RunResult, RunSetResult, StepResult, StepStatus, Verdict
from hil.runner import RunObserver, RunOptions, check_run, run_scenario
from hil.runset import RunSetPlan, RunSetRunner, expand_cells, load_suite, new_runset_dir, numbered, suite_names
from hil.scenario import builtin_names, load_scenario, scenarios_tagged
from hil.shard import Shard, load_durations, merge, parse_shard, record_durations, shard_cells
from hil.tokio.suite import SUITE_NAME as TOKIO_SUITE
from hil.tokio.suite import tokio_plan

VERDICT_STYLE = {"pass": "bold green", "fail": "bold red", "crash": "bold red", "hang": "bold magenta",
                 "infra": "bold yellow"}  # fmt: skip
# `hil run`'s exit codes, printed by `hil run --help` and pinned by tests (the README has the same table).
EXIT_CODES = (
    ("0", "pass: every step passed (a run set: every run)"),
    ("1", "fail, crash or hang: the guest failed (a run set: any run did)"),
    ("2", "usage error: a bad option or scenario, found before anything boots"),
    ("3", "infra: QEMU, image or host problem; a run set stopped early"),
    ("128+N", "stopped by signal N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)"),
)


def exit_code_table() -> str:
    return "exit codes:\n" + "\n".join(f"  {code:<6} {meaning}" for code, meaning in EXIT_CODES)


# --- the options ------------------------------------------------------------------------------------------


def add_run_arguments(run: argparse.ArgumentParser) -> None:
    what = run.add_argument_group("what to run")
    what.add_argument("scenario", nargs="*", help="built-in scenario names (see `hil list`) or .toml paths")
    what.add_argument("--tag", action="append", default=[], metavar="TAG",
                      help="also run every built-in scenario with this tag (repeatable; see `hil list`)")  # fmt: skip
    what.add_argument("--suite", metavar="NAME", help="run a suite: a name (`gate`, `tokio-examples`) or a .toml path")
    what.add_argument("--keep", action="store_true", help="leave the VM running afterwards (`hil exec`, `hil ssh`)")
    what.add_argument("--timeout-factor", type=argtypes.positive_float, metavar="X",
                      help="multiply every stage and step budget")  # fmt: skip
    _add_machine_arguments(run.add_argument_group("machine"))
    redox = run.add_argument_group("Redox guests only (redox, redox-kernel)")
    redox.add_argument("--packages", metavar="DIR|URL",
                       help="assemble the disk from these pkgar packages (the folder of *.pkgar files)")  # fmt: skip
    redox.add_argument("--kernel", type=Path, metavar="FILE", help="put this kernel into the assembled disk")
    redox.add_argument("--initfs", type=Path, metavar="FILE", help="put this initfs into the assembled disk")
    _add_runset_arguments(run.add_argument_group("run sets (several scenarios, smp values, repeats or a suite)"))
    reports = run.add_argument_group("reports")
    reports.add_argument("--report-dir", type=Path, metavar="DIR",
                         help="where artifacts and report.json go (default: a new folder)")  # fmt: skip
    reports.add_argument("--junit", type=Path, metavar="FILE", help="write a JUnit XML report")
    reports.add_argument("--html", type=Path, metavar="DIR", help="write an HTML report (index.html and plots)")


def _add_machine_arguments(machine: argparse._ArgumentGroup) -> None:
    machine.add_argument("--guest", metavar="NAME", help="guest profile (default: the scenario's, usually `reference`)")
    machine.add_argument("--image", type=Path, metavar="FILE",
                         help="the guest image to boot instead of the default one")  # fmt: skip
    machine.add_argument("--smp", type=argtypes.smp_list, metavar="N[,N..]",
                         help="number of virtual CPUs; a list (1,2,4) runs each")  # fmt: skip
    machine.add_argument("--memory", type=argtypes.positive_int, metavar="MIB", help="guest memory in MiB")
    machine.add_argument("--accel", choices=ACCELERATORS, default="auto", help="accelerator (default: auto)")
    machine.add_argument("--append", default="", metavar="ARGS",
                         help="extra kernel command line for guests booted with -kernel")  # fmt: skip
    machine.add_argument("--initrd-overlay", type=Path, metavar="CPIO", action="append", default=[],
                         help="a cpio archive laid over the guest's initramfs (repeatable)")  # fmt: skip
    machine.add_argument("--qemu", default="qemu-system-x86_64", metavar="BINARY", help="the QEMU binary")
    machine.add_argument("--snapshot", action=argparse.BooleanOptionalAction, default=None,
                         help="start from a snapshot of the booted guest (default: as the scenario says)")  # fmt: skip
    machine.add_argument("--dump-guest-memory", action="store_true",
                         help="on a hang, also save the guest's memory as guest-memory.elf")  # fmt: skip


def _add_runset_arguments(runset: argparse._ArgumentGroup) -> None:
    runset.add_argument("--repeat", type=argtypes.positive_int, metavar="N", default=1,
                        help="run every scenario (and smp value) N times")  # fmt: skip
    runset.add_argument("-j", "--jobs", type=argtypes.positive_int, metavar="N",
                        help="runs at once (default: the suite's, else CPUs)")  # fmt: skip
    runset.add_argument("--retry-infra", type=argtypes.count, metavar="N",
                        help="re-run a run whose verdict is infra up to N times")  # fmt: skip
    runset.add_argument("--only", type=argtypes.names, metavar="NAMES",
                        help="a suite's runs of these scenarios only; tokio-examples: these examples")  # fmt: skip
    runset.add_argument("--shard", type=_shard_arg, metavar="K/N",
                        help="run part K of N of the set (CI jobs); `hil report merge` joins the parts")  # fmt: skip


def _shard_arg(text: str) -> Shard:
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run_parser() -> argparse.ArgumentParser:
    """`hil run` on its own: how a run-set cell's command line is read back, exactly as its child reads it."""
    parser = argtypes.Parser(prog="hil run")
    parser.quiet_errors = True
    add_run_arguments(parser)
    return parser


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """The one translation of `hil run` options into RunOptions."""
    return RunOptions(
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
        dump_guest_memory=args.dump_guest_memory,
    )


# `hil run` options a run set passes on to every cell unchanged: (attribute, flag).
FORWARDED_OPTIONS = (
    ("guest", "--guest"),
    ("image", "--image"),
    ("memory", "--memory"),
    ("accel", "--accel"),
    ("timeout_factor", "--timeout-factor"),
    ("append", "--append"),
    ("packages", "--packages"),
    ("kernel", "--kernel"),
    ("initfs", "--initfs"),
    ("qemu", "--qemu"),
)
DEFAULTS_NOT_FORWARDED = {"accel": "auto", "append": "", "qemu": "qemu-system-x86_64"}
FORWARDED_FLAGS = (("dump_guest_memory", "--dump-guest-memory"),)


def forwarded_args(args: argparse.Namespace) -> Iterable[str]:
    for attribute, flag in FORWARDED_OPTIONS:
        value = getattr(args, attribute, None)
        if value is not None and value != DEFAULTS_NOT_FORWARDED.get(attribute):
            yield from (flag, str(value))
    for attribute, flag in FORWARDED_FLAGS:
        if getattr(args, attribute, False):
            yield flag
    for overlay in getattr(args, "initrd_overlay", None) or []:
        yield from ("--initrd-overlay", str(overlay))
    snapshot = getattr(args, "snapshot", None)
    if snapshot is not None:
        yield "--snapshot" if snapshot else "--no-snapshot"


# --- checks before anything boots -------------------------------------------------------------------------


def check_report_options(args: argparse.Namespace) -> None:
    if args.junit is not None:
        writable_file("--junit", args.junit)
    if args.html is not None:
        writable_dir("--html", args.html, private=False)


def check_cell(cell: Cell, plan: RunSetPlan) -> None:
    """A run-set cell is checked as its own `hil run` will check it, before any cell starts."""
    try:
        args = run_parser().parse_args([cell.scenario, *cell.args, *plan.common_args])
        check_run(load_scenario(cell.scenario), options_from_args(args))
    except UsageError as err:
        raise UsageError(f"run {cell.title}: {err}") from None


# --- run sets ---------------------------------------------------------------------------------------------


def runset_requested(args: Any) -> bool:
    """More than one run asked for: a suite, several scenarios, several smp values or repeats."""
    scenarios = list(getattr(args, "scenario", None) or [])
    smp = list(getattr(args, "smp", None) or [None])
    if getattr(args, "suite", None) or getattr(args, "shard", None):
        return True
    return len(scenarios) * len(smp) * getattr(args, "repeat", 1) > 1


# Suites made by code rather than read from a TOML file: name -> (smp values, --only names) -> plan.
GENERATED_SUITES: dict[str, Callable[[Sequence[int] | None, Sequence[str] | None], RunSetPlan]] = {
    TOKIO_SUITE: lambda smp, only: tokio_plan(smp, only).plan,
}


def suite_plan(name: str, smp: Sequence[int] | None = None, only: Sequence[str] | None = None) -> RunSetPlan:
    """A built-in, generated or TOML suite; `only` keeps the runs of those scenarios."""
    if name in GENERATED_SUITES:
        return GENERATED_SUITES[name](smp, only)
    plan = load_suite(name, smp)
    if only is None:
        return plan
    unknown = sorted(set(only) - {cell.label for cell in plan.cells})
    if unknown:
        known = ", ".join(dict.fromkeys(cell.label for cell in plan.cells))
        raise UsageError(f"--only {','.join(unknown)}: not in suite {plan.name}. Fix: use some of {known}")
    return replace(plan, cells=tuple(cell for cell in plan.cells if cell.label in only))


def is_suite_name(name: str) -> bool:
    """A bare name that is a suite and not a scenario (`hil run gate`, `hil run tokio-examples`)."""
    return "/" not in name and not name.endswith(".toml") and name not in builtin_names() and (
        name in GENERATED_SUITES or name in suite_names())


def plan_from_args(args: Any) -> RunSetPlan:
    scenarios = list(args.scenario or [])
    if getattr(args, "keep", False):
        raise UsageError("--keep leaves one VM running: use it with a single run, not a run set")
    if not scenarios and not args.suite:
        raise UsageError("name a scenario (e.g. `hil run boot`) or a suite (`hil run --suite gate`)")
    if args.only and not args.suite:
        raise UsageError("--only picks runs of a suite. Fix: add --suite NAME, or name the scenarios themselves")
    common = tuple(forwarded_args(args))
    suite = suite_plan(args.suite, args.smp, args.only) if args.suite else None
    cells = list(suite.cells) if suite else []
    if suite and args.repeat > 1:  # --repeat N: every suite entry N times
        cells = [cell for cell in cells if cell.repeat == 1 for _ in range(args.repeat)]
    cells += expand_cells(scenarios, args.smp or [None], args.repeat)
    name = suite.name if suite else _name_of(cells)
    jobs = args.jobs or (suite.jobs if suite else os.cpu_count() or 1)
    retry = args.retry_infra if args.retry_infra is not None else (suite.retry_infra if suite else 0)
    common = (*suite.common_args, *common) if suite else common
    cells, shard = numbered(cells), None
    if args.shard:  # the whole plan is numbered first, so a cell's id is the same in every shard
        cells, shard = shard_cells(cells, args.shard, load_durations())
        shard["name"], name = name, f"{name}-shard{args.shard.index}of{args.shard.total}"
    return RunSetPlan(name, tuple(cells), jobs, retry, common, suite.skipped if suite else (), shard)


def _name_of(cells: list[Cell]) -> str:
    labels = list(dict.fromkeys(cell.label for cell in cells))
    return "+".join(labels)[:40] if labels else "runset"


def runset_command(args: Any, terminal: Any) -> int:
    """`hil run` with several runs: check every cell, run them in parallel with a live table, then
    summarize and report."""
    plan = plan_from_args(args)
    for cell in plan.cells:
        check_cell(cell, plan)
    root = writable_dir("--report-dir", args.report_dir) if args.report_dir else new_runset_dir(plan.name)
    part = f" (shard {plan.shard['index']}/{plan.shard['total']} of {len(plan.shard['plan'])} runs, " \
        f"estimated {plan.shard['estimated_s']:.0f} s)" if plan.shard else ""
    terminal.print(f"hil run set [bold]{escape(plan.name)}[/]: {len(plan.cells)} runs{part}, {plan.jobs} at once, "
                   f"infra retries {plan.retry_infra}")  # fmt: skip
    terminal.print(f"  folder: {root}", soft_wrap=True)  # a path stays whole, to copy
    runner = RunSetRunner(plan, root)
    try:
        with live_progress(terminal, runner.progress) as on_change:
            runner.on_change = on_change
            runner.run()
    finally:  # stopped or not, CI gets its summary and reports from what ran
        if runner.result is not None:
            _publish(runner.result, args, terminal)
    assert runner.result is not None
    if plan.shard is None:  # a part must not change the table its sibling parts split by; the merge records
        record_durations(runner.result)  # the next split (--shard) is balanced by what this one measured
    return runner.result.exit_code


def _publish(result: RunSetResult, args: Any, terminal: Any) -> None:
    print_summary(terminal, result)
    written = write_reports(result, args.junit, args.html)
    for kind, path in {"runset": result.root / RUNSET_NAME, **written}.items():
        terminal.print(f"{kind}: {path}", soft_wrap=True)


def merge_command(args: Any, terminal: Any) -> int:
    """`hil report merge DIR...`: one run set of the shards' (every cell's artifacts stay where they are)."""
    results = [_load_runset(folder) for given in args.folders for folder in _runset_folders(given)]
    root = writable_dir("--out", args.out) if args.out else new_runset_dir("merged")
    merged = merge(results, root, args.name)
    merged.write()
    record_durations(merged)  # the whole plan's times, for the next split
    _publish(merged, args, terminal)
    if merged.stopped:
        terminal.print(f"[bold yellow]incomplete:[/] {escape(merged.stopped)}", soft_wrap=True)
    return merged.exit_code


def _load_runset(folder: Path) -> RunSetResult:
    try:
        return RunSetResult.load(folder)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{folder / RUNSET_NAME}: not a run set hil wrote ({err!r}). "
                         "Fix: give the folders `hil run --shard` reported") from None  # fmt: skip


def _runset_folders(given: Path) -> list[Path]:
    """A run-set folder, or a folder of them (`hil-report/` holding shard-1/, shard-2/, ...)."""
    if (given / RUNSET_NAME).is_file():
        return [given]
    found = sorted(path.parent for path in given.glob(f"*/{RUNSET_NAME}")) if given.is_dir() else []
    if not found:
        raise UsageError(f"{given}: holds no {RUNSET_NAME}. Fix: give the --report-dir of each `hil run --shard`")
    return found


def single_run_reports(args: Any, run_dir: Path, terminal: Any) -> None:
    """`hil run boot --junit FILE --html DIR`: the same reports for one run."""
    if not (getattr(args, "junit", None) or getattr(args, "html", None)):
        return
    result = RunSetResult.from_run_dirs([run_dir], name=run_dir.name, root=run_dir.parent)
    for kind, path in write_reports(result, args.junit, args.html).items():
        terminal.print(f"{kind}: {path}", soft_wrap=True)


# --- one run, live ----------------------------------------------------------------------------------------


STEP_STYLE = {StepStatus.PASS: "green", StepStatus.INTERRUPTED: "yellow"}


class LiveObserver(RunObserver):
    """Shows the current phase as a spinner and prints each stage and step as it completes."""

    def __init__(self, terminal: Terminal, status: Status) -> None:
        self.terminal = terminal
        self.status = status
        self.started = time.monotonic()
        self.result: RunResult | None = None
        self.stages_shown = False  # printed as they came: the summary does not repeat them as a table

    def phase(self, text: str) -> None:
        self.status.update(f"{text}  [dim]{time.monotonic() - self.started:5.1f} s[/]")
        if text.startswith("accelerator:"):
            label, _, rest = text.partition(" ")
            self.terminal.print(listing([(label, Text(rest))], indent=0))

    def stage(self, mark: StageMark) -> None:
        self.stages_shown = True
        when = f"{mark.seconds:6.2f} s" if mark.seconds is not None else "   -    "
        self.terminal.print(f"  stage [bold]{mark.name:<10}[/] {when}  {mark.status}")

    def step(self, result: StepResult) -> None:
        style = STEP_STYLE.get(result.status, "red")
        words = Text(result.name)
        words.append(f"  {result.reason}", style="dim")
        self.terminal.print(listing([("step", f"[{style}]{result.status:<4}[/]", words)]))
        if result.status not in (StepStatus.PASS, StepStatus.INTERRUPTED) and result.output.strip():
            self.terminal.print(output_tail(result, OUTPUT_TAIL_LINES))
        if result.cases:
            self.terminal.print(cases_table(result))

    def fault(self, event: FaultEvent) -> None:
        when = f"{event.seconds:6.2f} s" if event.seconds is not None else ""
        self.terminal.print(f"  fault [red]{escape(event.process or '?'):<10}[/] {when}  {escape(event.summary)}")

    def ended(self, result: RunResult) -> None:
        self.result = result
        for cut in (step for step in result.steps if step.status == StepStatus.INTERRUPTED):
            self.step(cut)  # never printed as it ran: it did not finish


OUTPUT_TAIL_LINES = 15


def output_tail(result: StepResult, count: int) -> RenderableType:
    """The last lines a failed step's command printed, as the guest printed them, each wrapped under itself."""
    lines = result.output.rstrip("\n").splitlines()
    shown = lines[-count:]
    where = f" (all of it: {result.output_file})" if result.output_file else ""
    head = f"its output{where}:" if len(shown) == len(lines) else f"its last {len(shown)} lines{where}:"
    rows = [("|", Text(line)) for line in shown]
    return Group(Padding(Text(head, style="dim"), (0, 0, 0, 8), expand=False), listing(rows, indent=8, gap=1))


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
        table.add_row(f"  {case['number']}", escape(case["name"]), f"[{style}]{status}[/]", *values,
                      escape(case["reason"]))  # fmt: skip
    return table


def _metric(metric: dict | None) -> str:
    if not metric:
        return ""
    value = metric["value"]
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:g}"


def run_command(args: argparse.Namespace, terminal: Terminal) -> int:
    check_report_options(args)
    if args.tag:  # `--tag gate`: the tagged built-ins join the named scenarios (a run set when several)
        args.scenario = list(dict.fromkeys([*args.scenario, *scenarios_tagged(args.tag)]))
    if len(args.scenario) == 1 and not args.suite and is_suite_name(args.scenario[0]):
        args.suite, args.scenario = args.scenario[0], []
    if runset_requested(args):
        return runset_command(args, terminal)
    if not args.scenario:
        raise UsageError("name a scenario (e.g. `hil run boot`) or a suite (`hil run --suite gate`)")
    scenario = load_scenario(args.scenario[0])
    options = options_from_args(args)
    check_run(scenario, options)
    terminal.print(f"hil run [bold]{scenario.name}[/] on guest [bold]{options.guest or scenario.guest}[/]")
    with terminal.status("preparing") as status:
        observer = LiveObserver(terminal, status)
        try:
            result = run_scenario(scenario, options, observer)
        finally:  # a run stopped by a signal or Ctrl-C still says what it got to and where its report is
            status.stop()
            if observer.result is not None:
                print_result(terminal, observer.result, observer.stages_shown)
                single_run_reports(args, observer.result.run_dir, terminal)
    return result.exit_code


def print_result(terminal: Terminal, result: RunResult, stages_shown: bool = False) -> None:
    if result.timeline and result.verdict != Verdict.PASS and not stages_shown and _boot_went_wrong(result):
        terminal.print(timeline_table(result))
    style = VERDICT_STYLE[str(result.verdict)]
    # Reasons and console lines quote the guest ("NAME [bootstrap]", "vCPU 0 in [user]"): never markup.
    words = Text.assemble((str(result.verdict), style), f"  {result.reason}")
    terminal.print(listing([("verdict:", words)], indent=0, gap=1))
    cpus = result.details.get("cpus")
    if cpus and cpus["short"]:
        terminal.print(f"[yellow]cpus: the guest brought up {cpus['online']} of the {cpus['requested']} CPUs it was "
                       "given: per-CPU results measure fewer CPUs than asked[/]")  # fmt: skip
    for fault in result.faults:
        known = "known fault" if fault.allowed else "fault"
        terminal.print(f"  {known}: {escape(fault.summary)}")
        terminal.print(f"    [dim]signature {escape(fault.signature)}[/]")
    last_lines = result.details.get("hang", result.details.get("crash", {})).get("last_lines", [])[-15:]
    if last_lines:
        terminal.print(listing((Text("|", style="dim"), Text(line, style="dim")) for line in last_lines))
    snapshot = result.details.get("snapshot")
    if snapshot:
        terminal.print(f"snapshot {snapshot['key']}: {_snapshot_words(snapshot)}")
    if result.kept:
        print_kept(terminal, result)
    # The path whole, never wrapped, so it can be copied.
    terminal.print(f"report: {result.run_dir / 'report.json'}  ({result.duration:.1f} s)", soft_wrap=True)


def print_kept(terminal: Terminal, result: RunResult) -> None:
    """How to reach a kept VM: hil's own commands, and a command line for the system ssh to paste."""
    kept, run = result.kept or {}, result.run_dir
    terminal.print(f"VM kept running (pid {kept['pid']}); hil exec, ssh and console use the newest kept VM:")
    rows = [("console:", f"hil console {run}"), ("QMP:", f"hil console --qmp {run}"),
            ("stop:", f"hil console --stop {run}")]  # fmt: skip
    if kept.get("ssh_key"):
        from hil.kept_ssh import ssh_argv  # paramiko (55 ms) only once a VM is kept with SSH

        rows[:0] = [("run:", "hil exec -- uname -a"), ("log in:", "hil ssh"), ("copy:", "hil scp FILE :/tmp/")]
        rows += [("SSH key:", str(kept["ssh_key"])), ("ssh:", shlex.join(ssh_argv({**kept, "run_dir": str(run)})))]
    for label, line in rows:  # whole lines, never wrapped: they are meant to be copied
        terminal.print(f"  {label:<9}{escape(line)}", soft_wrap=True)


def _boot_went_wrong(result: RunResult) -> bool:
    """A stage missed or stuck: the stage table says where; after a clean boot it would only be noise."""
    assert result.timeline is not None
    return any(mark.status in ("missed", "stuck", "pending") for mark in result.timeline.marks)


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
