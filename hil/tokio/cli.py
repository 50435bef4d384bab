"""Command-line glue for `hil run tokio-examples` and `hil image reference --with tokio` (light imports only)."""

from __future__ import annotations

import argparse

from rich.console import Console

TOKIO_SCENARIO = "tokio-examples"  # the name `hil run` takes for the matrix


def run_tokio(args: argparse.Namespace, terminal: Console) -> int:
    """`hil run tokio-examples [--smp 1,2,4] [--examples a,b] [--parallel N]`, from `hil run`'s arguments."""
    from hil.tokio.matrix import tokio_command

    return tokio_command(
        args.smp or [],
        getattr(args, "examples", None),
        args.report_dir,
        terminal,
        parallel=getattr(args, "jobs", None) or 2,
        timeout_factor=args.timeout_factor,
        accel=args.accel,
    )
