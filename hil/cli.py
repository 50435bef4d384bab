"""The `hil` command line."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from rich.console import Console as Terminal

from hil import __version__
from hil.errors import HilError
from hil.qemu.accel import ACCELERATORS
from hil.qemu.process import install_signal_handlers
from hil.results import USAGE_EXIT_CODE, Terminated, signal_exit_code
from hil.runset import add_runset_arguments, smp_list

terminal = Terminal(stderr=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return USAGE_EXIT_CODE
    install_signal_handlers()
    try:
        return int(args.handler(args))
    except HilError as err:
        terminal.print(f"[bold red]hil:[/] {err}", markup=True, highlight=False, soft_wrap=True)
        return err.exit_code
    except Terminated as stop:
        terminal.print(f"[bold red]hil:[/] {stop}", markup=True)
        return signal_exit_code(stop.signum)
    except KeyboardInterrupt:
        terminal.print("[bold red]hil:[/] interrupted by Ctrl-C", markup=True)
        return signal_exit_code(signal.SIGINT)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="Hardware-in-the-loop tests for Redox OS in QEMU")
    parser.add_argument("--version", action="version", version=f"hil {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_run(commands)
    _add_list(commands)
    _add_console(commands)
    _add_doctor(commands)
    _add_image(commands)
    _add_bisect(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="boot a guest and run a scenario (e.g. `hil run boot`)")
    run.add_argument("scenario", nargs="*", help="built-in scenario names (see `hil list`) or .toml paths")
    run.add_argument("--guest", help="guest profile (default: the scenario's, usually `reference`)")
    run.add_argument("--image", type=Path, help="the guest image to boot instead of the default one")
    run.add_argument("--smp", type=smp_list, help="number of virtual CPUs; a list (1,2,4) runs each")
    run.add_argument("--memory", type=_positive_int, help="guest memory in MiB")
    run.add_argument("--accel", choices=ACCELERATORS, default="auto", help="accelerator (default: auto)")
    run.add_argument("--timeout-factor", type=_positive_float, help="multiply every stage and step budget")
    run.add_argument("--report-dir", type=Path, help="where artifacts and report.json go (default: a new folder)")
    run.add_argument("--keep", action="store_true", help="leave the VM running afterwards (see `hil console`)")
    run.add_argument("--snapshot", action=argparse.BooleanOptionalAction, default=None,
                     help="start from a snapshot of the booted guest (default: as the scenario says)")  # fmt: skip
    run.add_argument("--append", default="", help="extra kernel command line for guests booted with -kernel")
    run.add_argument("--initrd-overlay", type=Path, action="append", default=[],
                     help="a cpio archive laid over the guest's initramfs (repeatable)")  # fmt: skip
    run.add_argument("--packages", metavar="DIR|URL", help="Redox guests: assemble the disk from these pkgar packages")
    run.add_argument("--kernel", type=Path, help="Redox guests: put this kernel into the assembled disk")
    run.add_argument("--initfs", type=Path, help="Redox guests: put this initfs into the assembled disk")
    run.add_argument("--qemu", default="qemu-system-x86_64", help="the QEMU binary")
    run.add_argument("--dump-guest-memory", action="store_true",
                     help="on a hang, also save the guest's memory as guest-memory.elf")  # fmt: skip
    run.add_argument("--examples", type=_names, help="tokio-examples only: which examples (default: all)")
    add_runset_arguments(run)
    run.set_defaults(handler=_cmd_run)


def _add_list(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser("list", help="list the built-in scenarios and guest profiles")
    listing.set_defaults(handler=_cmd_list)


def _add_console(commands: argparse._SubParsersAction) -> None:
    console = commands.add_parser("console", help="attach to a VM left running by `hil run --keep`")
    console.add_argument("run_dir", nargs="?", type=Path, help="the kept run's folder (default: the latest)")
    mode = console.add_mutually_exclusive_group()
    mode.add_argument("--qmp", action="store_true", help="open a QMP shell instead of the serial console")
    mode.add_argument("--stop", action="store_true", help="stop the kept VM")
    mode.add_argument("--list", action="store_true", help="list kept VMs")
    console.set_defaults(handler=_cmd_console)


def _add_doctor(commands: argparse._SubParsersAction) -> None:
    doctor = commands.add_parser("doctor", help="check QEMU, the accelerator, cached images and the cache")
    doctor.set_defaults(handler=_cmd_doctor)


def _add_image(commands: argparse._SubParsersAction) -> None:
    image = commands.add_parser("image", help="build, fetch or assemble guest images")
    kinds = image.add_subparsers(title="image commands", metavar="KIND")
    reference = kinds.add_parser("reference", help="assemble the Linux reference guest from Debian packages")
    reference.add_argument("--force", action="store_true", help="rebuild even when the cached one is current")
    reference.add_argument("--with", dest="extras", action="append", default=[], choices=["tokio"],
                           help="also build a separate image with an extra: tokio (tokio's examples)")  # fmt: skip
    reference.set_defaults(handler=_cmd_image_reference)
    from hil.image.redox.assemble import add_assemble_arguments, add_ls_arguments

    assemble = kinds.add_parser("assemble", help="assemble a bootable Redox disk image from pkgar packages")
    add_assemble_arguments(assemble)
    assemble.set_defaults(handler=_cmd_image_assemble)
    from hil.image.build import add_build_arguments
    from hil.image.fetch import add_fetch_arguments

    fetch = kinds.add_parser("fetch", help="download an official Redox image (release or daily), verified and cached")
    add_fetch_arguments(fetch)
    fetch.set_defaults(handler=_cmd_image_fetch)
    build = kinds.add_parser("build", help="build a Redox image with hil's recipes in a Redox build system checkout")
    add_build_arguments(build)
    build.set_defaults(handler=_cmd_image_build)
    listing = kinds.add_parser("ls", help="list the files of a RedoxFS image hil wrote")
    add_ls_arguments(listing)
    listing.set_defaults(handler=_cmd_image_ls)


# --- handlers (imports inside keep `hil --help` fast) -----------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    from hil.cli_run import run_command

    return run_command(args, terminal)


def _cmd_list(args: argparse.Namespace) -> int:
    from hil.guest.profiles import get_profile, profile_names
    from hil.scenario import builtin_names, load_scenario

    terminal.print("[bold]Scenarios[/]")
    for name in builtin_names():
        scenario = load_scenario(name)
        terminal.print(f"  {name:<16} {scenario.description}  [dim](guest {scenario.guest})[/]")
    terminal.print("[bold]Guests[/]")
    for name in profile_names():
        terminal.print(f"  {name:<16} {get_profile(name).description}")
    return 0


def _cmd_console(args: argparse.Namespace) -> int:
    from hil.kept import console_command

    return console_command(args, terminal)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from hil.doctor import doctor_command

    return doctor_command(terminal)


def _add_bisect(commands: argparse._SubParsersAction) -> None:
    bisect = commands.add_parser(
        "bisect",
        help="find the commit that made a run hang or crash (flaky-aware)",
        description="hil bisect --repo R --good A --bad B [--build CMD] -- hil run SCENARIO ...   |   "
        "hil bisect run-step [--runs N] [--signature S] -- hil run SCENARIO ...  (for `git bisect run`: "
        "exits 0 good, 1 bad, 125 skip)",
    )
    bisect.add_argument("--repo", type=Path, help="the git repository to bisect")
    bisect.add_argument("--good", help="a revision without the bug")
    bisect.add_argument("--bad", help="a revision with the bug")
    bisect.add_argument("--build", help="shell command run in the repository at each commit (failure: skip)")
    bisect.add_argument("--runs", type=_positive_int, default=3,
                        help="runs at each endpoint (the bad one: up to twice this until the bug shows); "
                        "run-step: runs per commit")  # fmt: skip
    bisect.add_argument("--confidence", type=_probability, default=0.95, help="stop at this confidence")
    bisect.add_argument("--max-runs", type=_positive_int, default=200, help="give up after this many search runs")
    bisect.add_argument("--signature", help="the bug's signature (default: the bad commit's first failure)")
    bisect.add_argument("--failure-rate", type=_probability,
                        help="run-step: how often a bad commit shows the bug (sets the runs)")  # fmt: skip
    bisect.add_argument("--no-verify-good", action="store_true", help="do not run the good commit first")
    bisect.add_argument("--timeout-factor", type=_positive_float,
                        help="added to each `hil run` that lacks it (hang detection scales with it)")  # fmt: skip
    bisect.add_argument("--log-dir", type=Path, help="where bisect-log.jsonl and the runs go")
    bisect.add_argument("command", nargs=argparse.REMAINDER,
                        help="after `--`: the hil run command line (or `run-step [options] -- ...`)")  # fmt: skip
    bisect.set_defaults(handler=_cmd_bisect)


def _cmd_bisect(args: argparse.Namespace) -> int:
    from hil.bisect import bisect_command

    # Signatures hold brackets ("hang:livelock:[user]") that rich would take for markup.
    return bisect_command(args, Terminal(markup=False, highlight=False))


def _cmd_image_reference(args: argparse.Namespace) -> int:
    from hil.image.reference import reference_command

    return reference_command(args.force, terminal, extras=args.extras)


def _cmd_image_assemble(args: argparse.Namespace) -> int:
    from hil.image.redox.assemble import assemble_command

    return assemble_command(args, terminal)


def _cmd_image_fetch(args: argparse.Namespace) -> int:
    from hil.image.fetch import fetch_command

    return fetch_command(args, terminal)


def _cmd_image_build(args: argparse.Namespace) -> int:
    from hil.image.build import build_command

    return build_command(args, terminal)


def _cmd_image_ls(args: argparse.Namespace) -> int:
    from hil.image.redox.assemble import ls_command

    return ls_command(args, terminal)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _probability(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{value} must be below 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


if __name__ == "__main__":
    sys.exit(main())
