"""The Redox installer's whole-disk layout: BIOS bootloader, protective MBR, GPT, EFI and RedoxFS partitions.

What redox-os/installer's `with_whole_disk` does (mid-2025, gpt crate 3.1), for 512-byte sectors:
- `bootloader.bios` is written at byte 0. Its stage 1 is sector 0 and it leaves sectors 1-33 zero for the
  GPT; stage 2 and 3 follow from sector 34 (the BIOS loader is 384 KiB, so it ends inside partition 1).
- The protective MBR then overwrites only bytes 446..511 (four partition records and 55 AA), keeping the
  loader's boot code and disk signature: one record of type 0xEE from LBA 1 over `sectors - 1` sectors.
- GPT with 128 entries of 128 bytes: primary header at LBA 1, entries at LBA 2..33, first usable LBA 34;
  backup entries at `last - 32`, backup header at the last LBA; CRC32 over the header (92 bytes, its CRC
  field zeroed) and over the entry array.
- Partitions: 1 "BIOS" (BIOS boot type) LBA 34..2047; 2 "EFI" (EFI system type) the second MiB, a FAT
  volume holding EFI/BOOT/BOOTX64.EFI; 3 "REDOX" (Linux file system type, as the installer uses) from 2 MiB
  to the last whole MiB that leaves room for the backup GPT. The BIOS loader looks for RedoxFS at 2 MiB.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from hil.errors import InfraError, UsageError

SECTOR = 512
MIB = 1 << 20
GPT_ENTRIES = 128
GPT_ENTRY_SIZE = 128
GPT_HEADER_SIZE = 92
GPT_RESERVED_BYTES = 34 * SECTOR  # protective MBR + header + 32 sectors of entries
ENTRY_SECTORS = GPT_ENTRIES * GPT_ENTRY_SIZE // SECTOR
BIOS_BOOT_TYPE = uuid.UUID("21686148-6449-6E6F-744E-656564454649")
EFI_SYSTEM_TYPE = uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
LINUX_FS_TYPE = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")
REDOXFS_OFFSET = 2 * MIB
MIN_DISK_SIZE = 4 * MIB

_GPT_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
_GPT_ENTRY = struct.Struct("<16s16sQQQ72s")
_MBR_RECORD = struct.Struct("<B3sB3sII")


@dataclass(frozen=True)
class Partition:
    """A GPT partition; LBAs are inclusive, as in the GPT itself."""

    name: str
    type_guid: uuid.UUID
    first_lba: int
    last_lba: int
    guid: uuid.UUID

    @property
    def offset(self) -> int:
        return self.first_lba * SECTOR

    @property
    def size(self) -> int:
        return (self.last_lba - self.first_lba + 1) * SECTOR


@dataclass(frozen=True)
class DiskLayout:
    size: int
    bios: Partition
    efi: Partition
    redox: Partition

    @property
    def partitions(self) -> tuple[Partition, Partition, Partition]:
        return self.bios, self.efi, self.redox


def installer_layout(disk_size: int, efi_mib: int = 1) -> DiskLayout:
    """The partition table the installer computes for a disk of `disk_size` bytes."""
    if disk_size % SECTOR:
        raise UsageError(f"disk size {disk_size} is not a multiple of {SECTOR} bytes")
    least = MIN_DISK_SIZE + efi_mib * MIB  # RedoxFS's least, plus the EFI partition beside it
    if disk_size < least:
        raise UsageError(f"disk size {disk_size / MIB:g} MiB is too small: RedoxFS and a {efi_mib} MiB EFI "
                         f"partition need {least >> 20} MiB. Fix: give --size {least >> 20}M or more")  # fmt: skip
    bios_end = MIB // SECTOR - 1
    efi_end = bios_end + efi_mib * MIB // SECTOR
    redox_end = (disk_size - GPT_RESERVED_BYTES) // MIB * MIB // SECTOR - 1
    return DiskLayout(
        size=disk_size,
        bios=Partition("BIOS", BIOS_BOOT_TYPE, GPT_RESERVED_BYTES // SECTOR, bios_end, uuid.uuid4()),
        efi=Partition("EFI", EFI_SYSTEM_TYPE, bios_end + 1, efi_end, uuid.uuid4()),
        redox=Partition("REDOX", LINUX_FS_TYPE, efi_end + 1, redox_end, uuid.uuid4()),
    )


def write_bios_loader(out: BinaryIO, loader: bytes, layout: DiskLayout) -> None:
    """The BIOS loader at byte 0; it must end before the EFI partition and it must leave the GPT sectors zero
    (they are overwritten anyway, but a loader with code there would be broken)."""
    limit = layout.efi.offset
    if len(loader) > limit:
        raise UsageError(f"bootloader.bios is {len(loader)} bytes; it must fit before the EFI partition ({limit})")
    if any(loader[SECTOR:GPT_RESERVED_BYTES]):
        raise UsageError("bootloader.bios has data in sectors 1-33, where the GPT goes; is it a Redox BIOS loader?")
    out.seek(0)
    out.write(loader)


def write_partition_table(out: BinaryIO, layout: DiskLayout, disk_guid: uuid.UUID | None = None) -> None:
    """Protective MBR records (keeping bytes 0..445) plus primary and backup GPT."""
    sectors = layout.size // SECTOR
    out.seek(446)
    out.write(protective_mbr_records(sectors))
    entries = _entry_array(layout.partitions)
    guid = disk_guid or uuid.uuid4()
    last = sectors - 1
    primary = _gpt_header(1, last, 2, sectors, guid, entries)
    backup = _gpt_header(last, 1, last - ENTRY_SECTORS, sectors, guid, entries)
    for lba, data in ((1, primary), (2, entries), (last - ENTRY_SECTORS, entries), (last, backup)):
        out.seek(lba * SECTOR)
        out.write(data)


def protective_mbr_records(sectors: int) -> bytes:
    """Bytes 446..511: one 0xEE record from LBA 1 (CHS 0/0/2 to the 0xFFFFFF maximum), three empty, 55 AA."""
    count = min(sectors - 1, 0xFFFFFFFF)
    record = _MBR_RECORD.pack(0, b"\x00\x02\x00", 0xEE, b"\xff\xff\xff", 1, count)
    return record + bytes(3 * _MBR_RECORD.size) + b"\x55\xaa"


def _entry_array(partitions: tuple[Partition, ...]) -> bytes:
    array = bytearray(GPT_ENTRIES * GPT_ENTRY_SIZE)
    for number, part in enumerate(partitions):
        name = part.name.encode("utf-16-le")
        _GPT_ENTRY.pack_into(
            array, number * GPT_ENTRY_SIZE, part.type_guid.bytes_le, part.guid.bytes_le, part.first_lba,
            part.last_lba, 0, name,
        )  # fmt: skip
    return bytes(array)


def _gpt_header(current: int, backup: int, entries_lba: int, sectors: int, guid: uuid.UUID, entries: bytes) -> bytes:
    fields = [
        b"EFI PART", 0x00010000, GPT_HEADER_SIZE, 0, 0, current, backup,
        GPT_RESERVED_BYTES // SECTOR, sectors - 1 - ENTRY_SECTORS - 1, guid.bytes_le, entries_lba,
        GPT_ENTRIES, GPT_ENTRY_SIZE, zlib.crc32(entries),
    ]  # fmt: skip
    fields[3] = zlib.crc32(_GPT_HEADER.pack(*fields))
    return _GPT_HEADER.pack(*fields) + bytes(SECTOR - GPT_HEADER_SIZE)


# --- reading (tests and `hil image ls`) ---------------------------------------------------------------------


@dataclass(frozen=True)
class GptInfo:
    disk_guid: uuid.UUID
    partitions: list[Partition]
    backup_lba: int
    first_usable: int
    last_usable: int


def read_gpt(image: BinaryIO, name: str, size: int, primary: bool = True) -> GptInfo:
    """The GPT of an image, with both CRCs checked; `primary=False` reads the backup at the last LBA."""
    lba = 1 if primary else size // SECTOR - 1
    image.seek(lba * SECTOR)
    raw = image.read(GPT_HEADER_SIZE)
    if len(raw) < GPT_HEADER_SIZE or raw[:8] != b"EFI PART":
        raise InfraError(f"{name}: no GPT header at LBA {lba}")
    fields = list(_GPT_HEADER.unpack(raw))
    crc, fields[3] = fields[3], 0
    if zlib.crc32(_GPT_HEADER.pack(*fields)) != crc:
        raise InfraError(f"{name}: bad CRC32 of the GPT header at LBA {lba}")
    _, _, _, _, _, current, backup, first, last, guid, entries_lba, count, entry_size, entries_crc = fields
    if current != lba:
        raise InfraError(f"{name}: the GPT header at LBA {lba} says it is at LBA {current}")
    image.seek(entries_lba * SECTOR)
    entries = image.read(count * entry_size)
    if zlib.crc32(entries) != entries_crc:
        raise InfraError(f"{name}: bad CRC32 of the GPT entries at LBA {entries_lba}")
    partitions = [_partition(entries[i : i + entry_size]) for i in range(0, len(entries), entry_size)]
    used = [part for part in partitions if part.type_guid.int]
    return GptInfo(uuid.UUID(bytes_le=guid), used, backup, first, last)


def _partition(raw: bytes) -> Partition:
    type_guid, guid, first, last, _, name = _GPT_ENTRY.unpack_from(raw)
    label = name.decode("utf-16-le", errors="replace").split("\0", 1)[0]
    return Partition(label, uuid.UUID(bytes_le=type_guid), first, last, uuid.UUID(bytes_le=guid))


def redoxfs_offset(image: BinaryIO, name: str, size: int) -> int:
    """Where the RedoxFS starts: the REDOX (or first Linux-type) GPT partition, else 2 MiB as the BIOS loader
    assumes, else 0 for a bare file system image."""
    try:
        gpt = read_gpt(image, name, size)
    except InfraError:
        gpt = None
    if gpt is not None:
        for part in gpt.partitions:
            if part.name == "REDOX" or part.type_guid == LINUX_FS_TYPE:
                return part.offset
    for offset in (REDOXFS_OFFSET, 0):
        image.seek(offset)
        if image.read(8) == b"RedoxFS\0":
            return offset
    return REDOXFS_OFFSET
