"""vmlinux extraction, on synthetic bzImages wrapping a tiny hand-made ELF with (or without) a PVH note."""

import bz2
import gzip
import lzma
import struct
from pathlib import Path

import pytest
import zstandard

from hil.errors import InfraError
from hil.image.bzimage import XEN_ELFNOTE_PHYS32_ENTRY, extract_vmlinux, pvh_entry, vmlinux_from_bzimage

PVH_ENTRY = 0x1000850
SETUP_SECTS = 3
PAYLOAD_OFFSET = 0x2C0  # inside the protected-mode part, like the real decompressor stub


def _note(name: bytes, note_type: int, desc: bytes) -> bytes:
    name_z = name + b"\0"

    def pad(data: bytes) -> bytes:
        return data + b"\0" * ((4 - len(data) % 4) % 4)

    return struct.pack("<III", len(name_z), len(desc), note_type) + pad(name_z) + pad(desc)


def tiny_elf(with_pvh_note: bool = True) -> bytes:
    """An ELF64 x86-64 executable with one PT_NOTE segment and no sections."""
    notes = _note(b"Xen", 6, b"linux\0")  # XEN_ELFNOTE_GUEST_OS, present in real kernels too
    if with_pvh_note:
        notes += _note(b"Xen", XEN_ELFNOTE_PHYS32_ENTRY, struct.pack("<Q", PVH_ENTRY))
    header_size, phdr_size = 64, 56
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0x3E, 1, 0x1000000, header_size, 0, 0, header_size, phdr_size, 1, 64, 0, 0
    )
    offset = header_size + phdr_size
    phdr = struct.pack("<IIQQQQQQ", 4, 4, offset, 0, 0, len(notes), len(notes), 4)
    return header + phdr + notes


def make_bzimage(payload: bytes, protocol: int = 0x020F, trailing: bytes = b"\x12\x34\x56\x78") -> bytes:
    setup = bytearray((SETUP_SECTS + 1) * 512)
    setup[0x1F1] = SETUP_SECTS
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, protocol)
    struct.pack_into("<II", setup, 0x248, PAYLOAD_OFFSET, len(payload))
    stub = b"\x90" * PAYLOAD_OFFSET
    # Linux appends the uncompressed size after the stream, then more code: both must be ignored.
    return bytes(setup) + stub + payload + trailing + b"\xcc" * 100


COMPRESSORS = {
    "xz": lambda data: lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32),
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "lzma": lambda data: lzma.compress(data, format=lzma.FORMAT_ALONE),
}


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_extracts_the_elf_for_each_compression(compression: str) -> None:
    elf = tiny_elf()
    image = make_bzimage(COMPRESSORS[compression](elf))
    extracted, entry = vmlinux_from_bzimage(image, "test-bzImage")
    assert extracted == elf
    assert entry == PVH_ENTRY


def test_extract_vmlinux_writes_the_file(tmp_path: Path) -> None:
    source, target = tmp_path / "vmlinuz", tmp_path / "vmlinux"
    source.write_bytes(make_bzimage(COMPRESSORS["xz"](tiny_elf())))
    assert extract_vmlinux(source, target) == PVH_ENTRY
    assert target.read_bytes() == tiny_elf()


def test_pvh_entry_reads_the_xen_note() -> None:
    assert pvh_entry(tiny_elf(), "x") == PVH_ENTRY
    assert pvh_entry(tiny_elf(with_pvh_note=False), "x") is None


def test_kernel_without_pvh_note_is_refused() -> None:
    image = make_bzimage(COMPRESSORS["gzip"](tiny_elf(with_pvh_note=False)))
    with pytest.raises(InfraError, match="no PVH entry note"):
        vmlinux_from_bzimage(image, "old-kernel")


def test_non_bzimage_names_the_file_and_the_problem(tmp_path: Path) -> None:
    text_file = tmp_path / "config-6.1"
    text_file.write_bytes(b"CONFIG_PVH=y\n" * 100)
    with pytest.raises(InfraError, match=r"config-6\.1 is not a bzImage: no 'HdrS'"):
        extract_vmlinux(text_file, tmp_path / "out")
    with pytest.raises(InfraError, match="too short"):
        vmlinux_from_bzimage(b"MZ", "tiny")


def test_missing_file_is_an_infra_error(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="cannot read kernel image"):
        extract_vmlinux(tmp_path / "absent", tmp_path / "out")


def test_old_boot_protocol_is_refused() -> None:
    with pytest.raises(InfraError, match=r"boot protocol 2\.06"):
        vmlinux_from_bzimage(make_bzimage(COMPRESSORS["xz"](tiny_elf()), protocol=0x0206), "old")


def test_payload_beyond_the_end_is_reported() -> None:
    image = bytearray(make_bzimage(COMPRESSORS["xz"](tiny_elf())))
    struct.pack_into("<I", image, 0x24C, len(image))
    with pytest.raises(InfraError, match="truncated or corrupt"):
        vmlinux_from_bzimage(bytes(image), "cut")


def test_unsupported_compression_is_named() -> None:
    with pytest.raises(InfraError, match="bzip2"):
        vmlinux_from_bzimage(make_bzimage(bz2.compress(tiny_elf())), "bz")


def test_unknown_magic_is_reported_in_hex() -> None:
    with pytest.raises(InfraError, match=r"unknown compression.*magic 00112233"):
        vmlinux_from_bzimage(make_bzimage(b"\x00\x11\x22\x33\x44\x55\x66\x77"), "odd")


def test_corrupt_and_truncated_streams_are_reported() -> None:
    compressed = COMPRESSORS["xz"](tiny_elf() * 50)
    corrupt = compressed[:6] + b"\xff\xff" + compressed[8:]  # stream flags no xz decoder accepts
    with pytest.raises(InfraError, match="corrupt"):
        vmlinux_from_bzimage(make_bzimage(corrupt), "bad")
    with pytest.raises(InfraError, match="ends before its stream"):
        vmlinux_from_bzimage(make_bzimage(compressed[: len(compressed) // 2], trailing=b""), "short")


def test_payload_that_is_not_an_elf_is_refused() -> None:
    with pytest.raises(InfraError, match="not an ELF"):
        vmlinux_from_bzimage(make_bzimage(gzip.compress(b"just text, no ELF magic")), "text")
