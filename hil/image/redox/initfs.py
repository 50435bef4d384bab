"""A minimal Redox initfs: enough for the bootloader and kernel to start "userspace" at a chosen instruction.

The initfs header (redox-initfs `types.rs`, little endian, packed): magic "RedoxFtw", u32 inode table
offset, u64 initfs size, u16 page size, u16 root inode, u16 inode count, u64 bootstrap entry (at 0x1a, the
one field the kernel reads). Inodes are 12 bytes: u32 type (2 = directory), u32 length, u32 offset.
The bootloader checks the magic; the kernel maps the whole file at user address 0x1000 and jumps to the
bootstrap entry. So code at file offset N runs at 0x1000 + N.
"""

from __future__ import annotations

import struct

MAGIC = b"RedoxFtw"
LOAD_ADDRESS = 0x1000
ENTRY_OFFSET = 0x1A
CODE_OFFSET = 0x100
PAGE_SIZE = 4096
INODE_DIR = 2
UD2 = b"\x0f\x0b"  # x86 "undefined instruction": the kernel reports an invalid opcode fault and stops there

_HEADER = struct.Struct("<8sIQHHHQ")
_INODE = struct.Struct("<III")


def build_initfs(code: bytes = UD2) -> bytes:
    """An initfs with an empty root directory whose bootstrap entry is `code` (by default a faulting ud2)."""
    inode_table = _HEADER.size
    entry = LOAD_ADDRESS + CODE_OFFSET
    size = -(-(CODE_OFFSET + len(code)) // PAGE_SIZE) * PAGE_SIZE
    image = bytearray(size)
    _HEADER.pack_into(image, 0, MAGIC, inode_table, size, PAGE_SIZE, 0, 1, entry)
    _INODE.pack_into(image, inode_table, INODE_DIR, 0, 0)
    image[CODE_OFFSET : CODE_OFFSET + len(code)] = code
    return bytes(image)


def bootstrap_entry(initfs: bytes) -> int:
    """The address the kernel jumps to, as it reads it."""
    return struct.unpack_from("<Q", initfs, ENTRY_OFFSET)[0]
