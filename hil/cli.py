"""The `hil` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console as Terminal

from hil import __version__
from hil.errors import HilError
from hil.qemu.accel import ACCELERATORS
from hil.qemu.process import install_signal_handlers
from hil.verdict import USAGE_EXIT_CODE

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
    except KeyboardInterrupt:
        terminal.print("[bold red]hil:[/] interrupted", markup=True)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="Hardware-in-the-loop tests for Redox OS in QEMU")
    parser.add_argument("--version", action="version", version=f"hil {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_run(commands)
    _add_list(commands)
    _add_console(commands)
    _add_doctor(commands)
    _add_image(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="boot a guest and run a scenario (e.g. `hil run boot`)")
    run.add_argument("scenario", help="a built-in scenario name (see `hil list`) or a path to a .toml file")
    run.add_argument("--guest", help="guest profile (default: the scenario's, usually `reference`)")
    run.add_argument("--image", type=Path, help="the guest image to boot instead of the default one")
    run.add_argument("--smp", type=_positive_int, help="number of virtual CPUs")
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


def _cmd_image_reference(args: argparse.Namespace) -> int:
    from hil.image.reference import reference_command

    return reference_command(args.force, terminal)


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
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
