"""The installer's disk layout: partition ranges, protective MBR, both GPT headers and CRCs, the EFI FAT."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import uuid
import zlib
from pathlib import Path

import pytest

from hil.errors import UsageError
from hil.image.redox import disk
from hil.image.redox.fat import build_fat, short_name
from hil.image.redox.synthetic import fake_bios_loader

MIB = 1 << 20
SIZE = 256 * MIB


def _image(tmp_path: Path, size: int = SIZE, loader: bytes | None = None) -> tuple[Path, disk.DiskLayout]:
    path = tmp_path / "disk.img"
    layout = disk.installer_layout(size)
    with path.open("w+b") as image:
        image.truncate(size)
        if loader is not None:
            disk.write_bios_loader(image, loader, layout)
        disk.write_partition_table(image, layout, uuid.UUID("12345678-1234-5678-9abc-def012345678"))
    return path, layout


def _read(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as image:
        image.seek(offset)
        return image.read(size)


def test_partition_ranges_are_the_installers() -> None:
    layout = disk.installer_layout(SIZE)
    assert (layout.bios.first_lba, layout.bios.last_lba) == (34, 2047)
    assert (layout.efi.first_lba, layout.efi.last_lba) == (2048, 4095)
    # the installer keeps the RedoxFS to whole MiB below the backup GPT: 256 MiB - 34 sectors -> 255 MiB
    assert (layout.redox.first_lba, layout.redox.last_lba) == (4096, 255 * 2048 - 1)
    assert layout.redox.offset == disk.REDOXFS_OFFSET
    assert [p.name for p in layout.partitions] == ["BIOS", "EFI", "REDOX"]
    assert layout.bios.type_guid == uuid.UUID("21686148-6449-6E6F-744E-656564454649")
    assert layout.efi.type_guid == uuid.UUID("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
    assert layout.redox.type_guid == uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4")


def test_odd_sizes_end_the_redox_partition_on_a_whole_mib() -> None:
    layout = disk.installer_layout(100 * MIB + 40 * 512)
    assert layout.redox.last_lba == 100 * 2048 - 1
    with pytest.raises(UsageError, match="multiple of 512"):
        disk.installer_layout(SIZE + 1)
    with pytest.raises(UsageError, match="too small"):
        disk.installer_layout(2 * MIB)


def test_both_gpt_headers_have_valid_crcs_and_agree(tmp_path: Path) -> None:
    path, layout = _image(tmp_path)
    with path.open("rb") as image:
        primary = disk.read_gpt(image, "disk.img", SIZE)
        backup = disk.read_gpt(image, "disk.img", SIZE, primary=False)
    sectors = SIZE // 512
    assert primary.partitions == backup.partitions == list(layout.partitions)
    assert primary.disk_guid == backup.disk_guid == uuid.UUID("12345678-1234-5678-9abc-def012345678")
    assert (primary.backup_lba, backup.backup_lba) == (sectors - 1, 1)
    assert (primary.first_usable, primary.last_usable) == (34, sectors - 34)


def test_gpt_header_fields_at_their_offsets(tmp_path: Path) -> None:
    path, _ = _image(tmp_path)
    raw = _read(path, 0, 34 * 512)
    header = raw[512:1024]
    assert header[:8] == b"EFI PART" and struct.unpack_from("<II", header, 8) == (0x00010000, 92)
    crc = struct.unpack_from("<I", header, 16)[0]
    assert zlib.crc32(header[:16] + b"\0\0\0\0" + header[20:92]) == crc
    assert not any(header[92:])
    entries = raw[1024 : 1024 + 128 * 128]
    assert struct.unpack_from("<I", header, 88)[0] == zlib.crc32(entries)
    assert entries[56:64].decode("utf-16-le") == "BIOS"
    assert _read(path, SIZE - 33 * 512, 32 * 512) == entries  # the backup array


def test_protective_mbr_keeps_the_boot_code(tmp_path: Path) -> None:
    loader = fake_bios_loader()
    path, _ = _image(tmp_path, loader=loader)
    raw = _read(path, 0, len(loader))
    assert raw[:446] == loader[:446]
    assert raw[510:512] == b"\x55\xaa"
    status, chs_start, kind, chs_end, first, count = struct.unpack_from("<B3sB3sII", raw, 446)
    assert (status, chs_start, kind, chs_end, first, count) == (0, b"\0\2\0", 0xEE, b"\xff\xff\xff", 1, SIZE // 512 - 1)
    assert not any(raw[462:510])
    assert raw[34 * 512 : len(loader)] == loader[34 * 512 :]  # stage 2 onwards untouched


def test_bios_loader_must_fit_and_leave_the_gpt_area_empty(tmp_path: Path) -> None:
    layout = disk.installer_layout(SIZE)
    with (tmp_path / "x").open("w+b") as image:
        with pytest.raises(UsageError, match="must fit before the EFI partition"):
            disk.write_bios_loader(image, bytes(MIB + 1), layout)
        with pytest.raises(UsageError, match="sectors 1-33"):
            disk.write_bios_loader(image, b"\0" * 600 + b"\1", layout)


def test_redoxfs_offset_comes_from_the_gpt(tmp_path: Path) -> None:
    path, layout = _image(tmp_path)
    with path.open("rb") as image:
        assert disk.redoxfs_offset(image, "disk.img", SIZE) == layout.redox.offset


@pytest.mark.skipif(shutil.which("sgdisk") is None, reason="sgdisk (Debian package gdisk) is not installed")
def test_sgdisk_finds_no_problem(tmp_path: Path) -> None:
    path, _ = _image(tmp_path, loader=fake_bios_loader())
    result = subprocess.run(["sgdisk", "-v", str(path)], capture_output=True, text=True, check=False)
    assert "No problems found" in result.stdout, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk (Debian package fdisk) is not installed")
def test_sfdisk_reads_the_same_partitions(tmp_path: Path) -> None:
    path, layout = _image(tmp_path)
    result = subprocess.run(["sfdisk", "-J", str(path)], capture_output=True, text=True, check=True)
    table = json.loads(result.stdout)["partitiontable"]
    assert table["label"] == "gpt"
    found = [(p["name"], p["start"], p["size"], p["type"].upper()) for p in table["partitions"]]
    expected = [(p.name, p.first_lba, p.size // 512, str(p.type_guid).upper()) for p in layout.partitions]
    assert found == expected


# --- the EFI partition's FAT ----------------------------------------------------------------------------------


def _efi_volume(tmp_path: Path) -> tuple[Path, bytes]:
    loader = b"MZ" + os.urandom(171_006)
    volume = build_fat(MIB, {"EFI/BOOT/BOOTX64.EFI": loader, "EFI/BOOT/README.TXT": b"hi"}, mtime=1_700_000_000)
    path = tmp_path / "efi.img"
    path.write_bytes(volume)
    return path, loader


def test_fat_boot_sector_describes_a_fat12_volume(tmp_path: Path) -> None:
    path, _ = _efi_volume(tmp_path)
    raw = path.read_bytes()
    assert len(raw) == MIB and raw[510:512] == b"\x55\xaa"
    bytes_per_sector, per_cluster, reserved, fats, root_entries, total = struct.unpack_from("<HBHBHH", raw, 11)
    assert (bytes_per_sector, per_cluster, reserved, fats, root_entries, total) == (512, 1, 1, 2, 512, 2048)
    assert raw[54:62] == b"FAT12   "


@pytest.mark.skipif(shutil.which("fsck.fat") is None, reason="fsck.fat (Debian package dosfstools) is not installed")
def test_fsck_fat_accepts_the_volume(tmp_path: Path) -> None:
    path, _ = _efi_volume(tmp_path)
    result = subprocess.run(["fsck.fat", "-n", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("mcopy") is None, reason="mcopy (Debian package mtools) is not installed")
def test_mtools_reads_the_loader_back(tmp_path: Path) -> None:
    path, loader = _efi_volume(tmp_path)
    copy = tmp_path / "BOOTX64.EFI"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mcopy", "-i", str(path), "::EFI/BOOT/BOOTX64.EFI", str(copy)], check=True, env=env)
    assert copy.read_bytes() == loader


def test_fat_names_must_be_8_3() -> None:
    assert short_name("BOOTX64.EFI") == b"BOOTX64 EFI"
    for bad in ("bootx64.efi", "LONGNAME12.EFI", "A.LONG", ""):
        with pytest.raises(UsageError, match=r"8\.3"):
            short_name(bad)


def test_fat_refuses_files_that_do_not_fit() -> None:
    with pytest.raises(UsageError, match="too small"):
        build_fat(MIB, {"BIG.BIN": bytes(2 * MIB)})
