"""Parsing QEMU's `info registers` (HMP) text into the few vCPU facts hang triage needs.

QEMU prints one block per vCPU (`CPU#N` header with `-a`), either in the 64-bit form (`RIP=... RFL=...`)
or, for a vCPU still in real or protected mode (an application processor never started), in the 32-bit
form (`EIP=... EFL=...`). Either way the line with the instruction pointer carries `CPL=` and `HLT=`,
the only place QEMU 7.2 tells whether a vCPU sits in HLT (query-cpus-fast does not).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

_CPU_HEADER = re.compile(r"^CPU#(\d+)\s*$", re.MULTILINE)
# `R8 =0000...` has a space before `=`; segment lines (`CS =0010 0000... ffffffff 00af9b00`) yield their selector.
_PAIR = re.compile(r"\b([A-Z][A-Z0-9]*)\s?=\s?([0-9a-fA-F]+)\b")


@dataclass(frozen=True)
class VcpuRegisters:
    """One vCPU at one instant."""

    cpu: int
    rip: int
    rsp: int
    rflags: int
    cr3: int
    cpl: int
    halted: bool
    long_mode: bool  # printed in the 64-bit form (RIP=) rather than the 32-bit one (EIP=)
    cs: int = 0

    @property
    def user_mode(self) -> bool:
        return self.cpl == 3

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        for name in ("rip", "rsp", "rflags", "cr3", "cs"):
            fields[name] = f"{fields[name]:#x}"
        return fields


def parse_info_registers(text: str, default_cpu: int = 0) -> list[VcpuRegisters]:
    """Every vCPU block in `text` (the output of `info registers` or `info registers -a`)."""
    headers = list(_CPU_HEADER.finditer(text))
    if not headers:
        block = _parse_block(text, default_cpu)
        return [block] if block else []
    blocks = []
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        block = _parse_block(text[header.end() : end], int(header.group(1)))
        if block:
            blocks.append(block)
    return blocks


def _parse_block(text: str, cpu: int) -> VcpuRegisters | None:
    values: dict[str, int] = {}
    for match in _PAIR.finditer(text):
        values.setdefault(match.group(1), int(match.group(2), 16))
    long_mode = "RIP" in values
    rip = values.get("RIP", values.get("EIP"))
    if rip is None:
        return None
    return VcpuRegisters(
        cpu=cpu,
        rip=rip,
        rsp=values.get("RSP", values.get("ESP", 0)),
        rflags=values.get("RFL", values.get("EFL", 0)),
        cr3=values.get("CR3", 0),
        cpl=values.get("CPL", 0),
        halted=values.get("HLT", 0) == 1,
        long_mode=long_mode,
        cs=values.get("CS", 0),
    )
