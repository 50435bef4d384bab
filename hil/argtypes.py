"""argparse types for hil's options: each turns a bad value into one line naming what to give instead."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

from hil.errors import UsageError

MAX_SMP = 288  # QEMU's q35 limit


class Parser(argparse.ArgumentParser):
    """Reports a bad option in one line (argparse's default adds the whole usage), exit status 2; with
    `quiet_errors` it raises UsageError instead, for command lines hil reads back (run-set cells)."""

    quiet_errors = False

    def error(self, message: str) -> NoReturn:
        if self.quiet_errors:
            raise UsageError(f"{message} (see `{self.prog} --help`)")
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def whole_number(text: str, least: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"{value} must be at least {least}")
    return value


def positive_int(text: str) -> int:
    return whole_number(text, 1)


def count(text: str) -> int:
    """Zero or more (retries)."""
    return whole_number(text, 0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number greater than 0")
    return value


def probability(text: str) -> float:
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"{value} must be below 1")
    return value


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def smp_list(text: str) -> list[int]:
    """--smp: one number or a comma list (`1,2,4`)."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a comma list of numbers (1,2,4)") from None
    if not values or any(not 1 <= value <= MAX_SMP for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every CPU count must be from 1 to {MAX_SMP}")
    return values
