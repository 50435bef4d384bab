"""What a hung guest's vCPUs are doing, from a few register samples each.

- deadlock/idle: every vCPU sits in HLT or in the kernel's idle loop: everyone waits, nobody will wake
  them (a lost wakeup, a task blocked on something that never comes).
- livelock: some vCPU keeps executing inside one function across the samples without halting (a spin on
  a lock, a retry loop). A vCPU in user mode (CPL 3) across the samples counts as spinning in the
  pseudo-function `[user]`: user programs have no symbols here, and a process burning a CPU forever
  while the console stays silent is the same story seen from the kernel (its CR3 is kept as evidence).
- user-loop: a busy vCPU is in the kernel, but its samples are in two or more address spaces (CR3): it keeps
  switching contexts, so a user program is re-entering the kernel in a loop (sched_yield, a sleep, a poll)
  rather than the kernel spinning on its own. Seen on Redox: a bootstrap calling yield in a loop samples
  at kernel::time::monotonic (the scheduler reading the clock), alternating its own CR3 and the kernel's.
- running-but-silent: vCPUs run, but through different functions: the guest works on something without
  telling anyone (a slow path, a storm of interrupts, output going elsewhere).

Thresholds are deliberately loose because a sample can land in a timer interrupt: a vCPU is idle when at
least IDLE_SHARE of its samples are, and spinning when one function holds at least SPIN_SHARE of them.
A sample exactly at the first instruction of a kernel function is left out of that count when the vCPU
has others: stopping a TCG vCPU delivers a pending interrupt first, so it often stops on an interrupt
handler's entry (seen on Redox: a user spin sampled half the time at the PIT handler's first byte).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from hil.triage.registers import VcpuRegisters
from hil.triage.symbols import SymbolTable

IDLE_SHARE = 0.6
SPIN_SHARE = 0.5
USER_FUNCTION = "[user]"

# Functions a vCPU is in when its kernel has nothing to run. Matched on the name without compiler
# suffixes; a Rust path matches on its last components (`...::interrupt::halt`).
LINUX_IDLE = (
    "default_idle", "default_idle_call", "native_safe_halt", "pv_native_safe_halt", "arch_cpu_idle",
    "do_idle", "cpu_idle_poll", "cpu_startup_entry", "mwait_idle", "mwait_idle_with_hints", "intel_idle",
    "acpi_idle_do_entry", "acpi_idle_enter", "acpi_safe_halt", "cpuidle_enter_state", "poll_idle", "halt",
)  # fmt: skip
# Redox: kmain/kmain_ap (older kernels) or run_userspace (newer) loop on context::switch + enable_and_halt.
REDOX_IDLE = ("kernel::kmain", "kernel::kmain_ap", "kernel::run_userspace", "enable_and_halt", "interrupt::halt")
DEFAULT_IDLE_SYMBOLS = LINUX_IDLE + REDOX_IDLE

_COMPILER_SUFFIX = re.compile(r"(\.(isra|constprop|part|cold|lto_priv|llvm)(\.\d+)?)+$")
_MODULE_SUFFIX = re.compile(r" \[\S+\]$")


@dataclass(frozen=True)
class Sample:
    """One vCPU at one instant, with where its instruction pointer falls."""

    registers: VcpuRegisters
    location: str  # symbol+offset, [user] or a bare address
    function: str  # what classification compares: a normalized symbol, [user] or ?page
    at_entry: bool = False  # on a function's first instruction: likely an interrupt just delivered

    def as_dict(self) -> dict[str, Any]:
        regs = self.registers
        return {"rip": f"{regs.rip:#x}", "at": self.location, "function": self.function, "cpl": regs.cpl,
                "halted": regs.halted, "at_entry": self.at_entry, "rsp": f"{regs.rsp:#x}",
                "cr3": f"{regs.cr3:#x}"}  # fmt: skip


@dataclass
class CpuState:
    cpu: int
    state: str  # idle | spinning | running
    function: str | None  # the spinning (or dominant) function
    idle_share: float
    functions: dict[str, int] = field(default_factory=dict)
    address_spaces: list[str] = field(default_factory=list)  # the CR3s its busy kernel samples ran in


@dataclass
class Classification:
    kind: str  # deadlock/idle | livelock | running-but-silent | unknown
    spinning: list[str]
    cpus: list[CpuState]
    explanation: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def normalize_function(name: str) -> str:
    """A symbol name stable across builds: no `.isra.0`-style suffixes, no module tag."""
    return _COMPILER_SUFFIX.sub("", _MODULE_SUFFIX.sub("", name))


def locate(registers: VcpuRegisters, symbols: SymbolTable | None) -> Sample:
    if registers.user_mode:
        return Sample(registers, f"{USER_FUNCTION} {registers.rip:#x}", USER_FUNCTION)
    found = symbols.lookup(registers.rip) if symbols else None
    if found is None or found.symbol is None:
        # Without symbols, the 4 KiB page stands in for the function: spinning still shows as one place.
        return Sample(registers, f"{registers.rip:#x}", f"?{registers.rip & ~0xFFF:#x}")
    return Sample(registers, str(found), normalize_function(found.symbol), at_entry=found.offset == 0)


def is_idle(sample: Sample, idle_symbols: Sequence[str]) -> bool:
    if sample.registers.halted:
        return True
    name = sample.function
    return any(name == idle or name.endswith("::" + idle) for idle in idle_symbols)


def classify(per_cpu: dict[int, list[Sample]], idle_symbols: Sequence[str] = DEFAULT_IDLE_SYMBOLS) -> Classification:
    """Sort every vCPU into idle / spinning / running, then name the whole guest's state."""
    cpus = [_cpu_state(cpu, samples, idle_symbols) for cpu, samples in sorted(per_cpu.items()) if samples]
    if not cpus:
        return Classification("unknown", [], [], "no vCPU could be sampled")
    spinning = sorted({c.function for c in cpus if c.state == "spinning" and c.function})
    if all(c.state == "idle" for c in cpus):
        return Classification("deadlock/idle", [], cpus, "every vCPU is halted or in the idle loop")
    busy = [c for c in cpus if c.state != "idle"]
    looping = [c for c in busy if c.function != USER_FUNCTION and len(c.address_spaces) > 1]
    if looping and len(looping) == len(busy):
        where = ", ".join(f"vCPU {c.cpu} mostly in {c.function}, switching between address spaces "
                          f"{' and '.join(c.address_spaces)}" for c in looping)  # fmt: skip
        explanation = f"a user program keeps re-entering the kernel (a yield, sleep or poll loop): {where}"
        return Classification("user-loop", sorted({c.function for c in looping if c.function}), cpus, explanation)
    if spinning:
        where = ", ".join(f"vCPU {c.cpu} in {c.function}" for c in cpus if c.state == "spinning")
        return Classification("livelock", spinning, cpus, f"spinning without halting: {where}")
    busy = ", ".join(f"vCPU {c.cpu}" for c in cpus if c.state == "running")
    return Classification("running-but-silent", [], cpus, f"{busy} run through different functions")


def _cpu_state(cpu: int, samples: list[Sample], idle_symbols: Sequence[str]) -> CpuState:
    idle = [is_idle(s, idle_symbols) for s in samples]
    idle_share = sum(idle) / len(samples)
    busy = [s for s, at_idle in zip(samples, idle, strict=True) if not at_idle]
    functions = dict(Counter(s.function for s in busy).most_common())
    if idle_share >= IDLE_SHARE:
        return CpuState(cpu, "idle", None, round(idle_share, 2), functions)
    pool = [s for s in busy if not s.at_entry] or busy
    counts = Counter(s.function for s in pool)
    # On a tie, user mode wins: the kernel side of a tie is usually interrupts taken while it spins.
    top, top_count = max(counts.items(), key=lambda item: (item[1], item[0] == USER_FUNCTION))
    considered = len(samples) - (len(busy) - len(pool))
    state = "spinning" if top_count / considered >= SPIN_SHARE else "running"
    spaces = sorted({f"{s.registers.cr3 & ~0xFFF:#x}" for s in pool if not s.registers.user_mode})
    return CpuState(cpu, state, top, round(idle_share, 2), functions, spaces)
