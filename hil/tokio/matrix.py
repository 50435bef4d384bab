"""tokio's examples x smp values: one VM per smp value runs every example in turn, VMs in parallel processes.

Each cell (example, smp) gets pass, fail, hang, crash, infra or skip with a reason, and a folder with its
driver.log; each VM keeps its own run folder (serial log, console transcript, QMP log, argv). The whole
matrix goes to tokio-matrix.json and a table in the terminal.

Separate processes rather than threads: QEMU is tied to the thread that launched it (PR_SET_PDEATHSIG), and
a worker process owning its VM for its whole life is the simplest way to honour that. Workers themselves
die with hil (PDEATHSIG again), so killing hil leaves no QEMU behind.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hil.devices.net import E1000
from hil.errors import HilError, UsageError
from hil.guest.console import CommandTimeout, ConsoleClosed
from hil.guest.profiles import GuestOptions, get_profile
from hil.guest.stages import CrashSeen, StageTimeout
from hil.paths import new_run_dir, private_dir
from hil.qemu.accel import choose_accel
from hil.session import GuestSession, PlannedDevice
from hil.tokio.drivers import DRIVERS, DRIVERS_BY_NAME, Driver, DriverContext, forwards
from hil.tokio.examples import EXAMPLES_BY_NAME
from hil.tokio.guest import DriverFailure, DriverLog, GuestHang, GuestJobs

MATRIX_JSON = "tokio-matrix.json"
DEFAULT_SMP = (1, 2, 4)
DEFAULT_FACTOR = {"tcg": 1.0, "kvm": 0.5}
MEMORY_MB = 1024
STATUS_STYLE = {"pass": "green", "fail": "bold red", "hang": "bold magenta", "crash": "bold red",
                "infra": "bold yellow", "skip": "dim"}  # fmt: skip


@dataclass
class Cell:
    example: str
    smp: int
    status: str  # pass | fail | hang | crash | infra | skip
    reason: str
    seconds: float = 0.0
    artifacts: str = ""  # the cell's folder, relative to the report folder


@dataclass(frozen=True)
class VmJob:
    """What one worker process does: boot one VM with `smp` CPUs and run every driver on it."""

    smp: int
    drivers: tuple[Driver, ...]
    image: Path
    accel: str
    factor: float
    report_dir: Path


@dataclass
class MatrixResult:
    report_dir: Path
    cells: list[Cell]
    smp_values: tuple[int, ...]
    examples: list[str]
    duration: float
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(cell.status in ("pass", "skip") for cell in self.cells)


# --- the matrix -----------------------------------------------------------------------------------------


def run_matrix(
    smp_values: Sequence[int] = DEFAULT_SMP,
    examples: Sequence[str] | None = None,
    parallel: int = 2,
    report_dir: Path | None = None,
    timeout_factor: float | None = None,
    accel: str = "auto",
    drivers: Sequence[Driver] | None = None,
    console: Console | None = None,
) -> MatrixResult:
    """Build (or find) the reference guest with tokio's examples, then run every (example, smp) cell.

    `drivers` replaces the built-in drivers (tests break one on purpose); `examples` picks by name.
    """
    from hil.image.reference import build_reference

    console = console or Console(stderr=True)
    started = time.monotonic()
    chosen, skipped = _choose(examples, drivers)
    image = build_reference(extras=("tokio",), console=console)
    tokio = image.manifest["extras"]["tokio"]
    runnable = [driver for driver in chosen if all(name in tokio["built"] for name in driver.needs)]
    skipped.update({driver.name: _not_built_reason(driver, tokio["not_built"]) for driver in chosen
                    if driver not in runnable})  # fmt: skip
    choice = choose_accel(accel, get_profile("reference").kvm_probe(GuestOptions(image=image.root)))
    console.print(f"accelerator: {choice.name} ({choice.reason})")
    factor = timeout_factor or DEFAULT_FACTOR[choice.name]
    folder = private_dir(report_dir) if report_dir else new_run_dir("tokio-matrix")
    smp_values = tuple(dict.fromkeys(smp_values))
    jobs = [VmJob(smp, tuple(runnable), image.root, choice.name, factor, folder) for smp in smp_values]
    cells = _run_jobs(jobs, parallel, console) if runnable else []
    cells += [Cell(name, smp, "skip", reason) for name, reason in skipped.items() for smp in smp_values]
    names = [driver.name for driver in chosen] + [name for name in skipped if name not in DRIVERS_BY_NAME]
    result = MatrixResult(folder, _ordered(cells, names, smp_values), smp_values, names,
                          time.monotonic() - started)  # fmt: skip
    result.details = {"image": {"key": image.key, "root": str(image.root)}, "tokio": tokio, "accel": asdict(choice),
                      "timeout_factor": factor, "parallel": parallel}  # fmt: skip
    write_json(result)
    return result


def _choose(examples: Sequence[str] | None, drivers: Sequence[Driver] | None) -> tuple[list[Driver], dict[str, str]]:
    """The drivers to run, and the asked-for examples that cannot run on a Unix guest (with why)."""
    available = {driver.name: driver for driver in (drivers or DRIVERS)}
    if examples is None:
        unix_only = {} if drivers else {e.name: e.skip_reason for e in EXAMPLES_BY_NAME.values() if not e.applies}
        return list(available.values()), unix_only
    chosen: list[Driver] = []
    skipped: dict[str, str] = {}
    for name in examples:
        # A driver's name, or an example's: `connect` stands for both connect-tcp and connect-udp.
        matching = [available[name]] if name in available else [d for d in available.values() if d.example == name]
        if matching:
            chosen += [driver for driver in matching if driver not in chosen]
        elif name in EXAMPLES_BY_NAME and not EXAMPLES_BY_NAME[name].applies:
            skipped[name] = EXAMPLES_BY_NAME[name].skip_reason
        else:
            raise UsageError(f"unknown tokio example {name!r}; known: {', '.join(sorted(available))}")
    return chosen, skipped


def _not_built_reason(driver: Driver, not_built: dict[str, str]) -> str:
    missing = [name for name in driver.needs if name in not_built] or list(driver.needs)
    return "; ".join(f"{name} not built: {not_built.get(name, 'missing from the image')}" for name in missing)


def _run_jobs(jobs: list[VmJob], parallel: int, console: Console) -> list[Cell]:
    """The biggest VMs first (they take longest); inline when only one process is wanted."""
    jobs = sorted(jobs, key=lambda job: -job.smp)
    with console.status(f"Running {len(jobs[0].drivers)} tokio examples on {len(jobs)} VMs ({parallel} at a time)"):
        if parallel <= 1 or len(jobs) == 1:
            return [cell for job in jobs for cell in _report(run_vm(job), console)]
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads forked mid-flight
        with ProcessPoolExecutor(min(parallel, len(jobs)), mp_context=context, initializer=_worker_init,
                                 initargs=(os.getpid(),)) as pool:  # fmt: skip
            futures = {pool.submit(run_vm, job): job for job in jobs}
            cells: list[Cell] = []
            for future, job in futures.items():
                try:
                    cells += _report(future.result(), console)
                except Exception as err:  # the worker died (killed, out of memory): its cells are infra
                    cells += [Cell(d.name, job.smp, "infra", f"the VM's worker process failed: {err!r}")
                              for d in job.drivers]  # fmt: skip
            return cells


def _report(cells: list[Cell], console: Console) -> list[Cell]:
    if cells:
        passed = sum(cell.status == "pass" for cell in cells)
        console.print(f"  smp {cells[0].smp}: {passed}/{len(cells)} passed")
    return cells


def _worker_init(parent: int) -> None:
    """Die with hil (QEMU dies with this process the same way), and stop QEMU in order on SIGTERM."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
    from hil.qemu.process import install_signal_handlers

    install_signal_handlers()


# --- one VM ---------------------------------------------------------------------------------------------


def run_vm(job: VmJob) -> list[Cell]:
    """Boot, run each driver in turn, stop; every failure becomes cells, never an exception."""
    folder = private_dir(job.report_dir / f"smp-{job.smp}")
    network = E1000("net0", forwards=forwards(job.drivers))
    options = GuestOptions(image=job.image, smp=job.smp, memory_mb=MEMORY_MB, accel=job.accel)
    try:
        session = GuestSession(get_profile("reference"), options, private_dir(folder / "vm"),
                               devices=[PlannedDevice(network)], factor=job.factor)  # fmt: skip
    except HilError as err:
        return _all(job, "infra", f"cannot prepare the VM: {err}")
    try:
        problem = _boot(session)
        if problem:
            return _all(job, *problem)
        return _run_drivers(session, job, folder)
    finally:
        session.close()


def _boot(session: GuestSession) -> tuple[str, str] | None:
    try:
        session.start()
    except StageTimeout as hang:
        return "hang", f"the guest did not boot: {hang}"
    except CrashSeen as crash:
        return "crash", f"the guest crashed while booting: {crash}"
    except (HilError, TimeoutError) as err:
        return "infra", f"the guest did not boot: {err}"
    return None


def _all(job: VmJob, status: str, reason: str) -> list[Cell]:
    return [Cell(driver.name, job.smp, status, reason) for driver in job.drivers]


def _run_drivers(session: GuestSession, job: VmJob, folder: Path) -> list[Cell]:
    cells: list[Cell] = []
    for index, driver in enumerate(job.drivers):
        cell = run_cell(session, driver, job.smp, job.factor, folder)
        cells.append(cell)
        if cell.status in ("hang", "infra", "crash") and not _responsive(session):
            reason = f"not run: the guest stopped answering during {driver.name}"
            cells += [Cell(d.name, job.smp, cell.status, reason) for d in job.drivers[index + 1 :]]
            break
    return cells


def run_cell(session: GuestSession, driver: Driver, smp: int, factor: float, folder: Path) -> Cell:
    """One driver on a booted guest, with its own folder and driver.log."""
    cell_dir = private_dir(folder / driver.name)
    log = DriverLog(cell_dir / "driver.log")
    jobs = GuestJobs(session, log, factor)
    started = time.monotonic()
    status, reason = "pass", ""
    try:
        reason = driver.run(DriverContext(session, jobs, log, factor))
    except GuestHang as err:
        status, reason = "hang", str(err)
    except DriverFailure as err:
        status, reason = "fail", str(err)
    except CommandTimeout as err:
        status, reason = "hang", f"the guest's shell did not answer: {err}"
    except ConsoleClosed as err:
        status, reason = "infra", f"QEMU exited: {err}"
    except OSError as err:  # the host's sockets: a reset or refused connection is the guest's answer
        status, reason = "fail", f"host-side network error: {err.__class__.__name__}: {err} (nothing listening?)"
    except Exception as err:  # a bug in hil: keep the traceback with the cell
        status, reason = "infra", f"internal error in the driver: {err!r}"
        (cell_dir / "hil-traceback.txt").write_text(traceback.format_exc())
    finally:
        _cleanup(session, jobs, log)
    cell = Cell(driver.name, smp, status, reason, round(time.monotonic() - started, 2),
                str(cell_dir.relative_to(folder.parent)))  # fmt: skip
    log.note(f"result: {status}: {reason}")
    log.close()
    (cell_dir / "cell.json").write_text(json.dumps(asdict(cell), indent=2) + "\n")
    return cell


def _cleanup(session: GuestSession, jobs: GuestJobs, log: DriverLog) -> None:
    """Stop what the driver left running, so the next example starts on a quiet guest."""
    try:
        jobs.stop_all()
    except (CommandTimeout, ConsoleClosed) as err:
        log.note(f"cleanup failed: {err}")
        _responsive(session)


def _responsive(session: GuestSession) -> bool:
    try:
        session.console.resync(10 * session.factor)
        return True
    except (TimeoutError, ConsoleClosed):
        return False


# --- results --------------------------------------------------------------------------------------------


def _ordered(cells: list[Cell], names: list[str], smp_values: tuple[int, ...]) -> list[Cell]:
    rank = {name: index for index, name in enumerate(names)}
    return sorted(cells, key=lambda cell: (rank.get(cell.example, len(rank)), smp_values.index(cell.smp)))


def write_json(result: MatrixResult) -> Path:
    counts: dict[str, int] = {}
    for cell in result.cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    document = {
        "verdict": "pass" if result.ok else "fail",
        "summary": counts,
        "smp": list(result.smp_values),
        "examples": result.examples,
        "duration_s": round(result.duration, 1),
        **result.details,
        "cells": [asdict(cell) for cell in result.cells],
    }
    path = result.report_dir / MATRIX_JSON
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def matrix_table(result: MatrixResult) -> Table:
    table = Table(title="tokio examples x smp", show_edge=False)
    table.add_column("example")
    for smp in result.smp_values:
        table.add_column(f"smp {smp}")
    by_key = {(cell.example, cell.smp): cell for cell in result.cells}
    for name in result.examples:
        row = [by_key.get((name, smp)) for smp in result.smp_values]
        table.add_row(name, *(_cell_text(cell) for cell in row))
    return table


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    style = STATUS_STYLE.get(cell.status, "")
    seconds = f" {cell.seconds:.1f}s" if cell.status not in ("skip",) and cell.seconds else ""
    return f"[{style}]{cell.status}[/]{seconds}"


def print_result(result: MatrixResult, console: Console) -> None:
    console.print(matrix_table(result))
    for cell in result.cells:
        if cell.status != "pass" and not (cell.status == "skip" and cell.smp != result.smp_values[0]):
            where = "" if cell.status == "skip" else f" @ smp {cell.smp}"
            console.print(f"  [{STATUS_STYLE.get(cell.status, '')}]{cell.status}[/] {cell.example}{where}: "
                          f"{cell.reason}", soft_wrap=True)  # fmt: skip
    verdict = "[bold green]pass[/]" if result.ok else "[bold red]fail[/]"
    console.print(f"verdict: {verdict}  ({result.duration:.0f} s)  report: {result.report_dir / MATRIX_JSON}")


# --- command line ---------------------------------------------------------------------------------------


def tokio_command(
    smp: Sequence[int],
    examples: Sequence[str] | None,
    report_dir: Path | None,
    console: Console,
    *,
    parallel: int = 2,
    timeout_factor: float | None = None,
    accel: str = "auto",
) -> int:
    """`hil run tokio-examples --smp 1,2,4 [--examples echo,chat]`: 0 when every cell passes, else 1."""
    result = run_matrix(smp or DEFAULT_SMP, examples, parallel, report_dir, timeout_factor, accel, console=console)
    print_result(result, console)
    return 0 if result.ok else 1
