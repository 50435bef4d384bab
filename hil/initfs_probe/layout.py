"""An initfs image from the probe's ELF: the loadable segments placed so that file offset X runs at 0x1000 + X.

The kernel maps the whole initfs file at user address 0x1000 and jumps to the u64 at file offset 0x1a
(redox-os/kernel caf5fa95 src/syscall/process.rs); the bootloader checks the magic. The header follows
redox-initfs `types.rs` (see hil/image/redox/initfs.py): magic, inode table offset, image size, page size,
root inode, inode count, bootstrap entry; one empty root directory inode follows it. The linker script keeps
the first page for them and starts the program at 0x2000.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from hil.image.redox.initfs import ENTRY_OFFSET, INODE_DIR, LOAD_ADDRESS, MAGIC, PAGE_SIZE

HEADER = struct.Struct("<8sIQHHHQ")
INODE = struct.Struct("<III")
RESERVED = PAGE_SIZE  # file bytes before the first segment: header and inode table
MAX_IMAGE = 16 << 20  # far more than the probe needs; a bigger one is a broken link

assert HEADER.size == ENTRY_OFFSET + 8


@dataclass(frozen=True)
class Segment:
    vaddr: int
    offset: int  # in the initfs file
    filesz: int
    memsz: int
    executable: bool


@dataclass(frozen=True)
class InitfsHeader:
    magic: bytes
    inode_table: int
    size: int
    page_size: int
    root_inode: int
    inode_count: int
    entry: int


def parse_header(image: bytes) -> InitfsHeader:
    return InitfsHeader(*HEADER.unpack_from(image, 0))


def load_segments(elf_bytes: bytes) -> tuple[int, list[Segment]]:
    """(entry, PT_LOAD segments) of an x86_64 executable; ValueError when it is not one the kernel can run."""
    from elftools.common.exceptions import ELFError  # imported when used: pyelftools costs 30 ms a start
    from elftools.elf.constants import P_FLAGS
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(elf_bytes))
        if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64" or elf["e_type"] != "ET_EXEC":
            raise ValueError(f"not an x86_64 executable (class {elf.elfclass}, {elf['e_machine']}, {elf['e_type']})")
        segments = [
            Segment(
                vaddr=seg["p_vaddr"],
                offset=seg["p_vaddr"] - LOAD_ADDRESS,
                filesz=seg["p_filesz"],
                memsz=seg["p_memsz"],
                executable=bool(seg["p_flags"] & P_FLAGS.PF_X),
            )
            for seg in elf.iter_segments()
            if seg["p_type"] == "PT_LOAD" and seg["p_memsz"] > 0
        ]
        return elf["e_entry"], segments
    except ELFError as exc:
        raise ValueError(f"not a readable ELF file: {exc}") from exc


def _check(entry: int, segments: list[Segment]) -> int:
    """The image size the segments need; ValueError when they cannot be laid out as the kernel maps them."""
    if not segments:
        raise ValueError("the ELF file has no loadable segment")
    ordered = sorted(segments, key=lambda s: s.offset)
    previous_end = RESERVED
    for seg in ordered:
        if seg.offset < previous_end:
            raise ValueError(
                f"segment at {seg.vaddr:#x} overlaps the initfs header page or another segment "
                f"(segments must start at or above {LOAD_ADDRESS + RESERVED:#x})"
            )
        previous_end = seg.offset + seg.memsz
    if not any(s.executable and s.vaddr <= entry < s.vaddr + s.filesz for s in segments):
        raise ValueError(f"the entry point {entry:#x} is not inside an executable segment's file data")
    size = -(-previous_end // PAGE_SIZE) * PAGE_SIZE
    if size > MAX_IMAGE:
        raise ValueError(f"the image would be {size} bytes (limit {MAX_IMAGE})")
    return size


def initfs_from_elf(elf_bytes: bytes) -> bytes:
    """The initfs file: header, root inode, then each segment at vaddr - 0x1000 (bss as zeros), page-padded."""
    from elftools.elf.elffile import ELFFile

    entry, segments = load_segments(elf_bytes)
    size = _check(entry, segments)
    elf = ELFFile(io.BytesIO(elf_bytes))
    image = bytearray(size)
    for seg in elf.iter_segments():
        if seg["p_type"] == "PT_LOAD" and seg["p_filesz"]:
            offset = seg["p_vaddr"] - LOAD_ADDRESS
            image[offset : offset + seg["p_filesz"]] = seg.data()
    inode_table = HEADER.size
    HEADER.pack_into(image, 0, MAGIC, inode_table, size, PAGE_SIZE, 0, 1, entry)
    INODE.pack_into(image, inode_table, INODE_DIR, 0, 0)
    return bytes(image)
