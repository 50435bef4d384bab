"""Sampling every vCPU of a live VM through QMP: stop, read registers, resume, let it run a moment, again.

Each sample is `stop` + `query-cpus-fast` (cpu index -> host thread) + HMP `info registers -a` + `cont`.
Between samples the guest runs for `interval` seconds while the caller drains the serial console: a guest
printing into a console nobody reads blocks in its UART driver (QEMU's socket chardev stops taking bytes
after a few hundred unread writes), and the samples would then show that wait instead of the hang.
A VM that was not running when triage began (paused by a guest panic, say) is sampled once and left as is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hil.triage.registers import VcpuRegisters, parse_info_registers

DEFAULT_SAMPLES = 10
DEFAULT_INTERVAL = 0.05


class Qmp(Protocol):
    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30.0) -> Any: ...

    def hmp(self, command_line: str, timeout: float = 30.0) -> str: ...


@dataclass(frozen=True)
class VcpuSnapshot:
    """All vCPUs at one instant (seconds since sampling began)."""

    seconds: float
    registers: list[VcpuRegisters]
    threads: dict[int, int]  # cpu index -> host thread id
    status: str


def sample_vcpus(
    qmp: Qmp,
    *,
    samples: int = DEFAULT_SAMPLES,
    interval: float = DEFAULT_INTERVAL,
    between: Callable[[float], None] = time.sleep,
) -> list[VcpuSnapshot]:
    """`samples` snapshots of every vCPU; the VM is left running if it was running."""
    status = str(qmp.execute("query-status").get("status", "unknown"))
    if status != "running":
        return [_snapshot(qmp, 0.0, status)]
    started = time.monotonic()
    snapshots = []
    for index in range(samples):
        qmp.execute("stop")
        try:
            snapshots.append(_snapshot(qmp, time.monotonic() - started, status))
        finally:
            qmp.execute("cont")
        if index + 1 < samples:
            between(interval)
    return snapshots


def _snapshot(qmp: Qmp, seconds: float, status: str) -> VcpuSnapshot:
    threads = {int(cpu["cpu-index"]): int(cpu["thread-id"]) for cpu in qmp.execute("query-cpus-fast")}
    registers = parse_info_registers(qmp.hmp("info registers -a"))
    return VcpuSnapshot(round(seconds, 3), registers, threads, status)
