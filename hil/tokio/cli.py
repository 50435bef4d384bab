"""Command-line glue for `hil run tokio-examples` and `hil image reference --with tokio` (light imports only)."""

from __future__ import annotations

import argparse

from rich.console import Console

TOKIO_SCENARIO = "tokio-examples"  # the name `hil run` takes for the matrix


def smp_list(text: str) -> list[int]:
    """argparse type for `--smp 1,2,4` (a single number is a one-item list)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of CPU counts") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every CPU count must be at least 1")
    return values


def name_list(text: str) -> list[str]:
    """argparse type for `--examples echo,chat`."""
    return [part.strip() for part in text.split(",") if part.strip()]


def run_tokio(args: argparse.Namespace, terminal: Console) -> int:
    """`hil run tokio-examples [--smp 1,2,4] [--examples a,b] [--parallel N]`, from `hil run`'s arguments."""
    from hil.tokio.matrix import tokio_command

    return tokio_command(
        args.smp or [],
        getattr(args, "examples", None),
        args.report_dir,
        terminal,
        parallel=getattr(args, "parallel", 2),
        timeout_factor=args.timeout_factor,
        accel=args.accel,
    )
