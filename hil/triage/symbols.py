"""Kernel symbols: address -> function + offset, from an ELF symbol table or kallsyms / System.map text.

The Redox kernel ELF keeps its symbol table (Rust names, legacy mangling, demangled here). Debian's vmlinux
has none, so the reference guest's symbols come from its own /proc/kallsyms, read once over SSH (measured
here: ~1 s for 4 MiB over SSH, ~185 s for the 2 MiB of text symbols over the 115200-baud serial console)
and cached on the host by the kernel image's sha256. That is only sound with `nokaslr`, which the reference
guest boots with; the cache is written only when the guest's command line says so.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from hil.paths import cache_dir
from hil.store import atomic_write

# Beyond this distance from the last symbol an address is not attributed to it (kallsyms has no sizes).
MAX_UNSIZED_OFFSET = 1 << 20
_TEXT_TYPES = frozenset("TtWw")
_KALLSYMS_LINE = re.compile(r"^([0-9a-fA-F]+)\s+(\S)\s+(\S+)(?:\s+\[(\S+)\])?\s*$")


@dataclass(frozen=True)
class Symbol:
    name: str
    address: int
    size: int | None = None


@dataclass(frozen=True)
class Location:
    """Where an address falls: `symbol+0xoffset` (symbol None when nothing covers it)."""

    address: int
    symbol: str | None
    offset: int = 0

    def __str__(self) -> str:
        if self.symbol is None:
            return f"{self.address:#x}"
        return f"{self.symbol}+{self.offset:#x}"


class SymbolTable:
    """Function symbols sorted by address; `lookup` finds the one containing an address."""

    def __init__(self, symbols: Iterable[Symbol], source: str = "") -> None:
        ordered = sorted({(s.address, s.name): s for s in symbols if s.address}.values(), key=lambda s: s.address)
        self.symbols = ordered
        self.source = source
        self._addresses = [s.address for s in ordered]

    def __len__(self) -> int:
        return len(self.symbols)

    def lookup(self, address: int) -> Location:
        index = bisect.bisect_right(self._addresses, address) - 1
        # Sized symbols may nest or alias (ELF): walk back a little for one that covers the address.
        for candidate in self.symbols[max(0, index - 8) : index + 1][::-1]:
            if _covers(candidate, address):
                return Location(address, candidate.name, address - candidate.address)
        return Location(address, None)

    @classmethod
    def from_elf(cls, path: Path) -> SymbolTable | None:
        """Function symbols of an ELF file; None when it has no symbol table (a stripped vmlinux)."""
        try:
            with open(path, "rb") as stream:
                elf = ELFFile(stream)
                table = elf.get_section_by_name(".symtab")
                if not isinstance(table, SymbolTableSection):
                    return None
                symbols = [_elf_symbol(s) for s in table.iter_symbols() if s["st_info"]["type"] == "STT_FUNC"]
        except (OSError, ELFError):
            return None
        return cls(symbols, f"elf:{path}")

    @classmethod
    def from_kallsyms(cls, text: str, source: str = "kallsyms") -> SymbolTable:
        """`ffffffff81000000 T _stext` lines (kallsyms, System.map); text symbols only."""
        return cls(_kallsyms_symbols(text), source)


def _covers(symbol: Symbol, address: int) -> bool:
    if address < symbol.address:
        return False
    limit = symbol.size if symbol.size else MAX_UNSIZED_OFFSET
    return address - symbol.address < limit


def _elf_symbol(entry: object) -> Symbol:
    return Symbol(demangle(entry.name), entry["st_value"], entry["st_size"] or None)  # type: ignore[attr-defined]


def _kallsyms_symbols(text: str) -> list[Symbol]:
    symbols = []
    for line in text.splitlines():
        match = _KALLSYMS_LINE.match(line)
        if not match or match.group(2) not in _TEXT_TYPES:
            continue
        name = match.group(3) if not match.group(4) else f"{match.group(3)} [{match.group(4)}]"
        symbols.append(Symbol(name, int(match.group(1), 16)))
    return _bounded_by_next(symbols)


def _bounded_by_next(symbols: list[Symbol]) -> list[Symbol]:
    """kallsyms has no sizes: a symbol ends where the next one starts."""
    symbols.sort(key=lambda s: s.address)
    sized = []
    for current, following in zip(symbols, [*symbols[1:], None], strict=True):
        size = following.address - current.address if following else None
        sized.append(Symbol(current.name, current.address, size or None))
    return sized


# --- Rust legacy demangling (`_ZN6kernel4kmain17h0123456789abcdefE` -> `kernel::kmain`) ---------------------

_RUST_ESCAPES = {"SP": "@", "BP": "*", "RF": "&", "LT": "<", "GT": ">", "LP": "(", "RP": ")", "C": ","}
_RUST_HASH = re.compile(r"^h[0-9a-f]{16}$")
_DOLLAR_ESCAPE = re.compile(r"\$([A-Z]{1,2}|u[0-9a-f]{2,6})\$")


def demangle(name: str) -> str:
    """Rust legacy-mangled names made readable (without the hash); other names unchanged."""
    parts = _legacy_parts(name)
    if parts is None:
        return name
    if parts and _RUST_HASH.match(parts[-1]):
        parts = parts[:-1]
    return "::".join(_unescape(part) for part in parts)


def _legacy_parts(name: str) -> list[str] | None:
    body = name[3:] if name.startswith("_ZN") else name[4:] if name.startswith("__ZN") else None
    if body is None:
        return None
    parts, position = [], 0
    while position < len(body) and body[position] != "E":
        digits = re.match(r"\d+", body[position:])
        if not digits:
            return None
        length, position = int(digits.group()), position + len(digits.group())
        parts.append(body[position : position + length])
        position += length
    return parts if position < len(body) else None


def _unescape(part: str) -> str:
    if part.startswith("_$"):
        part = part[1:]
    part = _DOLLAR_ESCAPE.sub(_escape_char, part)
    return part.replace("..", "::")


def _escape_char(match: re.Match[str]) -> str:
    code = match.group(1)
    if code.startswith("u"):
        return chr(int(code[1:], 16))
    return _RUST_ESCAPES.get(code, match.group(0))


# --- the host-side kallsyms cache ----------------------------------------------------------------------------


@cache
def file_digest(path: Path) -> str:
    """sha256 of a file, remembered on disk by (path, size, mtime): every run asks, few files change."""
    stat = path.stat()
    memo_path = cache_dir() / "symbols" / "digests.json"
    key, stamp = str(path), [stat.st_size, stat.st_mtime_ns]
    memo = _read_json(memo_path)
    if isinstance(memo.get(key), list) and memo[key][:2] == stamp:
        return str(memo[key][2])
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    memo[key] = [*stamp, digest.hexdigest()]
    with contextlib.suppress(OSError):  # a memo: without it the next run hashes again
        atomic_write(memo_path, json.dumps(memo))
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def kallsyms_cache_path(kernel: Path) -> Path:
    return cache_dir() / "symbols" / f"kallsyms-{file_digest(Path(kernel).resolve())[:32]}.txt"


def cached_kallsyms(kernel: Path) -> SymbolTable | None:
    path = kallsyms_cache_path(kernel)
    with contextlib.suppress(OSError):
        return SymbolTable.from_kallsyms(path.read_text(), f"kallsyms cache {path.name}")
    return None


def store_kallsyms(kernel: Path, text: str) -> Path:
    """Keep the text symbols of `text` for `kernel` (written atomically; other lines dropped)."""
    kept = [line for line in text.splitlines() if (m := _KALLSYMS_LINE.match(line)) and m.group(2) in _TEXT_TYPES]
    return atomic_write(kallsyms_cache_path(kernel), "\n".join(kept) + "\n")
