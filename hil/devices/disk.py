"""Disks with known content for storage devices, and the per-run overlays that keep them unwritten.

Every 4 KiB block starts with a header naming the block, followed by a pattern derived from the block
number, so a guest (or a probe) can verify any block it reads without a copy of the disk.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from hil.cache import CacheArea
from hil.qemu.machine import create_overlay

BLOCK = 4096
PATTERN_VERSION = 1
HEADER = b"HIL-DISK"
DISKS = CacheArea("disks", lock_per_key=True)  # workers wanting the same disk wait for one to write it


def block_content(index: int, seed: int = 0) -> bytes:
    """The known content of block `index`: header, block number, then a cheap deterministic pattern."""
    head = HEADER + struct.pack("<QQ", index, seed)
    word = hashlib.sha256(head).digest()
    body = (word * (BLOCK // len(word) + 1))[: BLOCK - len(head)]
    return head + body


def known_disk(size_mib: int, seed: int = 0) -> Path:
    """A cached raw disk of `size_mib` MiB with known content, read-only once written."""
    name = f"known-v{PATTERN_VERSION}-{size_mib}m-s{seed}.raw"
    return DISKS.make(name, lambda scratch: _write_known_disk(scratch / name, size_mib, seed), read_only=True)


def _write_known_disk(path: Path, size_mib: int, seed: int) -> Path:
    with open(path, "wb") as out:
        for index in range(size_mib * (1 << 20) // BLOCK):
            out.write(block_content(index, seed))
    return path


def disk_overlay(base: Path, run_dir: Path, name: str) -> Path:
    overlay = run_dir / f"{name}.qcow2"
    if not overlay.exists():
        create_overlay(base, "raw", overlay)
    return overlay
