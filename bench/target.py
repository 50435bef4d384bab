"""The last line every bench prints: its figure against its target, and whether the target is met."""

from __future__ import annotations


def print_target(what: str, figure: str, target: str, met: bool) -> None:
    """e.g. `console_throughput: 208.5 MB/s (target >= 200 MB/s): target met`."""
    print(f"{what}: {figure} (target {target}): {'target met' if met else 'target MISSED'}", flush=True)
