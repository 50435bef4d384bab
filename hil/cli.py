"""The `hil` command line."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from rich.console import Console as Terminal
from rich.markup import escape

from hil import __version__
from hil.argtypes import Parser, positive_float, positive_int, probability
from hil.cli_run import add_run_arguments, exit_code_table, merge_command, run_command
from hil.doctor import doctor_command
from hil.errors import HilError
from hil.image.build import add_build_arguments, build_command
from hil.image.fetch import add_fetch_arguments, fetch_command
from hil.image.redox.assemble import add_assemble_arguments, add_ls_arguments, assemble_command, ls_command
from hil.image.reference import reference_command
from hil.kept import add_kept_argument, console_command
from hil.lifetime import install_signal_handlers
from hil.listing import add_list_arguments, list_command
from hil.results import USAGE_EXIT_CODE, Terminated, signal_exit_code
from hil.triage.logs import triage_command

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
        # Messages quote user input and guest text ("boot[run=1]", "NAME [bootstrap]"): never markup.
        terminal.print(f"[bold red]hil:[/] {escape(str(err))}", markup=True, highlight=False, soft_wrap=True)
        return err.exit_code
    except Terminated as stop:
        terminal.print(f"[bold red]hil:[/] {stop}", markup=True)
        return signal_exit_code(stop.signum)
    except KeyboardInterrupt:
        terminal.print("[bold red]hil:[/] interrupted by Ctrl-C", markup=True)
        return signal_exit_code(signal.SIGINT)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hil", description="Hardware-in-the-loop tests for Redox OS in QEMU")
    parser.add_argument("--version", action="version", version=f"hil {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    _add_run(commands)
    _add_list(commands)
    _add_console(commands)
    _add_kept_ssh(commands)
    _add_doctor(commands)
    _add_image(commands)
    _add_bisect(commands)
    _add_triage(commands)
    _add_report(commands)
    return parser


def _add_run(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="boot a guest and run a scenario (e.g. `hil run boot`)",
        description="Boot a guest, run a scenario's steps: one verdict per run, all artifacts kept.",
        epilog=f"examples:\n{RUN_EXAMPLES}\n\n{exit_code_table()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(run)
    run.set_defaults(handler=_cmd_run)


RUN_EXAMPLES = """\
  hil run nvme-uring                          the io_uring probe on NVMe
  hil run boot --smp 4 --keep                 boot, run the steps, keep the VM
  hil run boot --smp 1,2,4 --repeat 3 -j 2    a run set of 9 runs, 2 at once
  hil run --suite gate --junit gate.xml       what CI runs
  hil run --tag storage -j 2                  every scenario tagged storage
  hil run kernel-smoke --packages DIR         a real Redox kernel"""


def _add_list(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser("list", help="list the built-in scenarios (guest, tags), suites and guests")
    add_list_arguments(listing)
    listing.set_defaults(handler=_cmd_list)


def _add_console(commands: argparse._SubParsersAction) -> None:
    console = commands.add_parser("console", help="attach to a VM left running by `hil run --keep`")
    console.add_argument("run_dir", nargs="?", type=Path, help="the kept run's folder (default: the latest)")
    mode = console.add_mutually_exclusive_group()
    mode.add_argument("--qmp", action="store_true", help="open a QMP shell instead of the serial console")
    mode.add_argument("--stop", action="store_true", help="stop the kept VM")
    mode.add_argument("--list", action="store_true", help="list kept VMs")
    console.set_defaults(handler=_cmd_console)


def _add_kept_ssh(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("exec", help="run one command in a kept VM over SSH; exits with its status",
                              description="hil exec [--run DIR] -- CMD [ARG...]: one word is a shell line "
                              "(`hil exec -- 'dmesg | tail'`), several are quoted as given.")  # fmt: skip
    add_kept_argument(run)
    run.add_argument("--timeout", type=positive_float, default=600.0, help="seconds to wait (default: 600)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="after `--`: the command")
    run.set_defaults(handler=_cmd_exec)
    ssh = commands.add_parser("ssh", help="log in to a kept VM with ssh (the run's key and port)")
    add_kept_argument(ssh)
    ssh.add_argument("command", nargs=argparse.REMAINDER, help="after `--`: a command instead of a login shell")
    ssh.set_defaults(handler=_cmd_ssh)
    scp = commands.add_parser("scp", help="copy a file into or out of a kept VM (`:PATH` is in the guest)")
    add_kept_argument(scp)
    scp.add_argument("source", help="FILE, or :PATH in the guest")
    scp.add_argument("target", help=":PATH in the guest (a folder ends in /), or FILE")
    scp.set_defaults(handler=_cmd_scp)


def _cmd_exec(args: argparse.Namespace) -> int:
    from hil.kept_ssh import exec_command  # paramiko (55 ms) only for the commands that use it

    return exec_command(args, terminal)


def _cmd_ssh(args: argparse.Namespace) -> int:
    from hil.kept_ssh import ssh_command  # paramiko (55 ms) only for the commands that use it

    return ssh_command(args, terminal)


def _cmd_scp(args: argparse.Namespace) -> int:
    from hil.kept_ssh import scp_command  # paramiko (55 ms) only for the commands that use it

    return scp_command(args, terminal)


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
    assemble = kinds.add_parser("assemble", help="assemble a bootable Redox disk image from pkgar packages")
    add_assemble_arguments(assemble)
    assemble.set_defaults(handler=_cmd_image_assemble)
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
    return run_command(args, terminal)


def _cmd_list(args: argparse.Namespace) -> int:
    return list_command(args, terminal)


def _cmd_console(args: argparse.Namespace) -> int:
    return console_command(args, terminal)


def _cmd_doctor(args: argparse.Namespace) -> int:
    return doctor_command(terminal)


def _add_bisect(commands: argparse._SubParsersAction) -> None:
    bisect = commands.add_parser(
        "bisect",
        help="find the commit that made a run hang or crash (flaky-aware)",
        description="hil bisect --repo R --good A --bad B [--build CMD] -- hil run SCENARIO ...   |   "
        "hil bisect run-step [--failure-rate R] [--signature S] -- hil run SCENARIO ...  (for `git bisect "
        "run`: exits 0 good, 1 bad, 125 skip; see `hil bisect run-step --help`)",
    )
    bisect.add_argument("--repo", type=Path, help="the git repository to bisect")
    bisect.add_argument("--good", help="a revision without the bug")
    bisect.add_argument("--bad", help="a revision with the bug")
    bisect.add_argument("--build", help="shell command run in the repository at each commit (failure: skip)")
    bisect.add_argument("--runs", type=positive_int, default=3,
                        help="runs at each endpoint (the bad one: up to twice this until the bug showed twice); "
                        "run-step: runs per commit")  # fmt: skip
    bisect.add_argument("--confidence", type=probability, default=0.95, help="stop at this confidence")
    bisect.add_argument("--max-runs", type=positive_int, default=200, help="give up after this many search runs")
    bisect.add_argument("--signature", help="the bug's signature (default: the bad commit's first failure)")
    bisect.add_argument("--failure-rate", type=probability,
                        help="run-step: how often a bad commit shows the bug (sets the runs)")  # fmt: skip
    bisect.add_argument("--jobs", "-j", type=positive_int, default=1,
                        help="runs of one commit at once, as far as the cores hold each VM's --smp")  # fmt: skip
    bisect.add_argument("--artifact", type=Path, action="append", default=[],
                        help="a file or folder the build writes and the runs read (repeatable): kept per "
                        "commit, so a commit the search returns to is not rebuilt")  # fmt: skip
    bisect.add_argument("--no-verify-good", action="store_true", help="do not run the good commit first")
    bisect.add_argument("--timeout-factor", type=positive_float,
                        help="added to each `hil run` that lacks it (hang detection scales with it)")  # fmt: skip
    bisect.add_argument("--log-dir", type=Path, help="where bisect-log.jsonl and the runs go")
    bisect.add_argument("command", nargs=argparse.REMAINDER,
                        help="after `--`: the hil run command line (or `run-step [options] -- ...`)")  # fmt: skip
    bisect.set_defaults(handler=_cmd_bisect)


def _cmd_bisect(args: argparse.Namespace) -> int:
    from hil.bisect import bisect_command  # numpy and the bisect engine only for `hil bisect`
    from hil.bisect_step import run_step_command

    # Signatures hold brackets ("hang:livelock:[user]") that rich would take for markup.
    plain = Terminal(markup=False, highlight=False)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if command[:1] == ["run-step"]:  # its own parser: `run-step --help` is help, not a command to test
        return run_step_command(args, command[1:], plain)
    return bisect_command(args, plain)


def _add_triage(commands: argparse._SubParsersAction) -> None:
    triage = commands.add_parser(
        "triage",
        help="what hil says about a saved serial log: stages, crashes and faults, the verdict",
        description="Read a serial log (a run's serial.log, QEMU -serial output, a paste from an issue) and say "
        "what hil would: the boot stages reached, every crash and program fault with its signature, the verdict. "
        "Exits as `hil run` would for that verdict.",
    )
    triage.add_argument("log", type=Path, help="the log file (- for standard input)")
    triage.add_argument("--guest", help="the guest profile that printed it (default: guessed from the log)")
    triage.add_argument("--allow", action="append", default=[], metavar="PROGRAM[:TITLE]",
                        help="a program whose faults are known (as a scenario's allow_faults)")  # fmt: skip
    triage.add_argument("--json", action="store_true", help="print the findings as JSON")
    triage.set_defaults(handler=_cmd_triage)


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="reports made from finished runs: merge shards")
    kinds = report.add_subparsers(title="reports", metavar="KIND", parser_class=Parser)
    merged = kinds.add_parser(
        "merge",
        help="one run set, JUnit and HTML report from the folders of `hil run --shard K/N`",
        description="Merge run sets (the shards of one plan, or any) into one runset.json and, if asked, one "
        "JUnit file and one HTML report; every run's artifacts stay in its shard's folder and are linked. "
        "The verdict is the worst of all; shards that split the plan differently, a missing shard or a run "
        "missing or run twice make it infra. Exits as `hil run` would for that verdict.",
    )
    merged.add_argument("folders", nargs="+", type=Path, metavar="DIR",
                        help="a shard's --report-dir (holding runset.json), or a folder of them")  # fmt: skip
    merged.add_argument("--out", type=Path, help="where the merged runset.json goes (default: a new folder)")
    merged.add_argument("--name", help="the merged set's name (default: the first shard's)")
    merged.add_argument("--junit", type=Path, metavar="FILE", help="write one JUnit XML report")
    merged.add_argument("--html", type=Path, metavar="DIR", help="write one HTML report")
    merged.set_defaults(handler=_cmd_report_merge)
    report.set_defaults(handler=lambda args: _usage(report))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return USAGE_EXIT_CODE


def _cmd_report_merge(args: argparse.Namespace) -> int:
    return merge_command(args, terminal)


def _cmd_triage(args: argparse.Namespace) -> int:
    return triage_command(args, terminal)


def _cmd_image_reference(args: argparse.Namespace) -> int:
    return reference_command(args.force, terminal, extras=args.extras)


def _cmd_image_assemble(args: argparse.Namespace) -> int:
    return assemble_command(args, terminal)


def _cmd_image_fetch(args: argparse.Namespace) -> int:
    return fetch_command(args, terminal)


def _cmd_image_build(args: argparse.Namespace) -> int:
    return build_command(args, terminal)


def _cmd_image_ls(args: argparse.Namespace) -> int:
    return ls_command(args, terminal)


if __name__ == "__main__":
    sys.exit(main())
