"""The fallback output channel: probe results carried in the registers of a deliberate invalid-opcode fault.

When the probe cannot open the kernel's debug console (or was built with channel="regdump"), it runs its cases
silently and ends with `ud2`; the kernel prints the user registers of the faulting bootstrap context on the
serial console ("Invalid opcode fault", then "RAX:   48494c50524f4245" ... one line per register; redox-os/kernel
src/arch/x86_64/interrupt/handler.rs dump()). This module finds that dump and turns it into the same KTAP text
the console channel prints, so hil's parser and reports work unchanged. Layout 1 (set in src/rt.c):

    rax  magic "HILPROBE"             rsi  layout << 32 | plan
    rbx  pass mask (bit n-1: case n)  rdi  result of opening /scheme/debug (0: the build chose this channel)
    rcx  fail mask                    rbp  build id: layout << 16 | ABI index << 8 | variant index
    rdx  skip mask                    r8..r15  spec.REGDUMP_METRICS, in thousandths

Reasons and diagnostics do not fit in registers; the decoded text says so instead of inventing them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hil.initfs_probe import spec
from hil.initfs_probe.abi import ABIS, errno_names

REGISTERS = ("RAX", "RBX", "RCX", "RDX", "RSI", "RDI", "RBP", "R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15")
_REGISTER = re.compile(r"^\s*(?P<name>R[A-Z0-9]{1,2}):\s+(?P<value>[0-9a-fA-F]{1,16})\s*$")
_DUMP_START = re.compile(r"^\s*RFLAG:")
_METRIC_REGISTERS = ("R8", "R9", "R10", "R11", "R12", "R13", "R14", "R15")
NO_REASON = "no console: the register-dump channel carries no reason"


class RegdumpError(ValueError):
    """A dump with the probe's magic that cannot be decoded (a different layout or case list)."""


def register_dumps(text: str) -> list[dict[str, int]]:
    """Every register dump in the console text, in order: register name -> value."""
    dumps: list[dict[str, int]] = []
    current: dict[str, int] | None = None
    for raw in text.splitlines():
        line = raw.replace("\r", "")
        if _DUMP_START.match(line):
            current = {}
            dumps.append(current)
        elif (match := _REGISTER.match(line)) and current is not None and match.group("name") in REGISTERS:
            current[match.group("name")] = int(match.group("value"), 16)
    return [dump for dump in dumps if all(name in dump for name in REGISTERS)]


def find_probe_dump(text: str) -> dict[str, int] | None:
    """The last register dump that carries the probe's magic, or None."""
    ours = [dump for dump in register_dumps(text) if dump["RAX"] == spec.REGDUMP_MAGIC]
    return ours[-1] if ours else None


def ktap_from_console(text: str) -> str | None:
    """KTAP text decoded from the probe's register dump in the console text; None when there is none."""
    dump = find_probe_dump(text)
    return None if dump is None else decode(dump)


def decode(regs: Mapping[str, int]) -> str:
    """The KTAP lines the console channel would have printed, as far as the registers tell."""
    if missing := [name for name in REGISTERS if name not in regs]:
        raise RegdumpError(f"the dump lacks {', '.join(missing)}")
    if regs.get("RAX") != spec.REGDUMP_MAGIC:
        raise RegdumpError(f"RAX is {regs.get('RAX', 0):#x}, not the probe's magic {spec.REGDUMP_MAGIC:#x}")
    layout, plan = regs["RSI"] >> 32, regs["RSI"] & 0xFFFF_FFFF
    if layout != spec.REGDUMP_LAYOUT:
        raise RegdumpError(f"register-dump layout {layout}; this decoder reads layout {spec.REGDUMP_LAYOUT}")
    if plan != len(spec.CASES):
        raise RegdumpError(f"the dump has {plan} cases; this hil knows {len(spec.CASES)}: built from other sources?")
    variant, abi = _build(regs["RBP"])
    lines = [
        "KTAP version 1",
        f"1..{plan}",
        f"# probe {spec.PROGRAM} {spec.VERSION} redox",
        "# cases " + " ".join(spec.CASES),
        f"# variant {variant} abi {abi}",
        f"# channel register dump of an invalid-opcode fault: {_console_note(regs['RDI'], abi)}",
    ]
    for number, name in enumerate(spec.CASES, start=1):
        lines += _case_lines(number, name, regs)
    return "\n".join(lines) + "\n"


def _build(build_id: int) -> tuple[str, str]:
    variants, abis = list(spec.VARIANTS), list(ABIS)
    variant_index, abi_index = build_id & 0xFF, (build_id >> 8) & 0xFF
    variant = variants[variant_index] if variant_index < len(variants) else f"unknown-{variant_index}"
    abi = abis[abi_index] if abi_index < len(abis) else f"unknown-{abi_index}"
    return variant, abi


def _console_note(result: int, abi: str) -> str:
    if result == 0:
        return "the build chose this channel"
    signed = result - (1 << 64) if result >= 1 << 63 else result
    name = errno_names(ABIS[abi]).get(-signed, "?") if abi in ABIS else "?"
    return f"opening /scheme/debug returned {signed} ({name})"


def _case_lines(number: int, name: str, regs: Mapping[str, int]) -> list[str]:
    bit = 1 << (number - 1)
    passed, failed, skipped = (bool(regs[reg] & bit) for reg in ("RBX", "RCX", "RDX"))
    if failed:
        result = f"not ok {number} {name} # failed; {NO_REASON}"
    elif passed:
        result = f"ok {number} {name}"
    elif skipped:
        return [f"ok {number} {name} # SKIP {NO_REASON}"]
    else:
        return []  # never reported: the parser marks it missing
    return [result, *_metric_lines(name, regs)]


def _metric_lines(case: str, regs: Mapping[str, int]) -> list[str]:
    lines = []
    for (full_name, unit), register in zip(spec.REGDUMP_METRICS, _METRIC_REGISTERS, strict=False):
        if full_name.split(".", 1)[0] == case:
            lines.append(f"# metric {full_name}={_thousandths(regs[register])} {unit}")
    return lines


def _thousandths(value: int) -> str:
    whole, frac = divmod(value, 1000)
    return str(whole) if frac == 0 else f"{whole}.{frac:03d}"
