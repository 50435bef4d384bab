"""Pull the uncompressed vmlinux ELF out of an x86 bzImage, for QEMU's PVH boot.

QEMU boots an ELF `-kernel` through its PVH entry point, skipping the real-mode setup code and the
in-guest decompressor; under TCG that saves several seconds per cold boot. The bzImage keeps the
compressed ELF as its "payload", located by fields of the boot protocol's setup header.
"""

import io
import lzma
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import zstandard
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_NOTE_N_TYPE

from hil.errors import InfraError

SETUP_SECTS_OFFSET = 0x1F1
HEADER_MAGIC_OFFSET = 0x202
HEADER_MAGIC = b"HdrS"
PROTOCOL_OFFSET = 0x206
PAYLOAD_FIELDS_OFFSET = 0x248  # payload_offset, then payload_length (both u32, protocol 2.08+)
MIN_PROTOCOL = 0x208
SECTOR = 512

XEN_NOTE_NAME = "Xen"
XEN_ELFNOTE_PHYS32_ENTRY = 18

_MAGICS = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x5d\x00\x00", "lzma"),
    (b"BZh", "bzip2"),
    (b"\x02\x21\x4c\x18", "lz4"),
    (b"\x89LZO", "lzo"),
)


class _StreamDecompressor(Protocol):
    """What lzma, zlib and zstandard decompressor objects have in common."""

    eof: bool

    def decompress(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class Payload:
    """Where the compressed kernel sits inside a bzImage, and how it is compressed."""

    protocol: int
    offset: int
    length: int
    compression: str


def read_payload_location(image: bytes, source: str) -> Payload:
    """Parse the setup header; `source` names the file in error messages."""
    if len(image) < PAYLOAD_FIELDS_OFFSET + 8:
        raise InfraError(f"{source} is not a bzImage: only {len(image)} bytes, too short for a setup header")
    if image[HEADER_MAGIC_OFFSET : HEADER_MAGIC_OFFSET + 4] != HEADER_MAGIC:
        raise InfraError(f"{source} is not a bzImage: no 'HdrS' boot protocol magic at 0x202")
    (protocol,) = struct.unpack_from("<H", image, PROTOCOL_OFFSET)
    if protocol < MIN_PROTOCOL:
        raise InfraError(
            f"{source} uses boot protocol {protocol >> 8}.{protocol & 0xFF:02d}; "
            "2.08 or newer is needed to locate the compressed kernel"
        )
    setup_sects = image[SETUP_SECTS_OFFSET] or 4  # 0 means 4 for historical reasons
    payload_offset, payload_length = struct.unpack_from("<II", image, PAYLOAD_FIELDS_OFFSET)
    start = (setup_sects + 1) * SECTOR + payload_offset
    if payload_length == 0 or start + payload_length > len(image):
        raise InfraError(
            f"{source}: payload at {start:#x} of {payload_length} bytes lies outside the file "
            f"({len(image)} bytes); the bzImage is truncated or corrupt"
        )
    compression = detect_compression(image[start : start + 8])
    if compression is None:
        magic = image[start : start + 6].hex()
        raise InfraError(f"{source}: unknown compression of the kernel payload (magic {magic})")
    return Payload(protocol, start, payload_length, compression)


def detect_compression(head: bytes) -> str | None:
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    return None


def decompress(data: bytes, compression: str, source: str) -> bytes:
    """Decompress one stream, ignoring what follows it (Linux appends the uncompressed size)."""
    if compression == "xz":
        return _finish(lzma.LZMADecompressor(format=lzma.FORMAT_XZ), data, source, compression)
    if compression == "lzma":
        return _finish(lzma.LZMADecompressor(format=lzma.FORMAT_ALONE), data, source, compression)
    if compression == "gzip":
        return _finish(zlib.decompressobj(wbits=16 + zlib.MAX_WBITS), data, source, compression)
    if compression == "zstd":
        return _finish(zstandard.ZstdDecompressor().decompressobj(), data, source, compression)
    raise InfraError(f"{source}: the kernel is compressed with {compression}, which hil cannot decompress")


def _finish(decompressor: _StreamDecompressor, data: bytes, source: str, compression: str) -> bytes:
    try:
        output = decompressor.decompress(data)
    except (lzma.LZMAError, zlib.error, zstandard.ZstdError) as error:
        raise InfraError(f"{source}: the {compression} kernel payload is corrupt: {error}") from error
    if not decompressor.eof:
        raise InfraError(f"{source}: the {compression} kernel payload ends before its stream does")
    return output


def pvh_entry(elf_image: bytes, source: str) -> int | None:
    """The PVH entry address from the Xen PHYS32_ENTRY note, or None if the ELF has no such note."""
    try:
        elf = ELFFile(io.BytesIO(elf_image))
        for segment in elf.iter_segments():
            if segment["p_type"] != "PT_NOTE":
                continue
            for note in segment.iter_notes():
                if note["n_name"] == XEN_NOTE_NAME and _note_type(note["n_type"]) == XEN_ELFNOTE_PHYS32_ENTRY:
                    return _note_address(note["n_desc"])
    except ELFError as error:
        raise InfraError(f"{source}: the decompressed kernel is not a valid ELF: {error}") from error
    return None


def _note_type(n_type: int | str) -> int | None:
    # pyelftools names note types as if every note were a GNU one (Xen's 1..5 come back as NT_GNU_*).
    return n_type if isinstance(n_type, int) else ENUM_NOTE_N_TYPE.get(n_type)


def _note_address(desc: bytes | str) -> int:
    raw = desc if isinstance(desc, bytes) else desc.encode("latin-1")
    return int.from_bytes(raw[:8], "little")


def vmlinux_from_bzimage(image: bytes, source: str) -> tuple[bytes, int]:
    """The uncompressed kernel ELF and its PVH entry address; errors if it cannot boot through PVH."""
    payload = read_payload_location(image, source)
    compressed = image[payload.offset : payload.offset + payload.length]
    elf_image = decompress(compressed, payload.compression, source)
    if not elf_image.startswith(b"\x7fELF"):
        raise InfraError(f"{source}: the decompressed {payload.compression} payload is not an ELF file")
    entry = pvh_entry(elf_image, source)
    if entry is None:
        raise InfraError(
            f"{source}: the kernel has no PVH entry note (Xen note {XEN_ELFNOTE_PHYS32_ENTRY}); "
            "it was built without CONFIG_PVH and can only boot as a bzImage"
        )
    return elf_image, entry


def extract_vmlinux(bzimage: Path, destination: Path) -> int:
    """Write the PVH-bootable ELF inside `bzimage` to `destination`; returns its PVH entry address."""
    try:
        image = bzimage.read_bytes()
    except OSError as error:
        raise InfraError(f"cannot read kernel image {bzimage}: {error}") from error
    elf_image, entry = vmlinux_from_bzimage(image, str(bzimage))
    destination.write_bytes(elf_image)
    return entry
