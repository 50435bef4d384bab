"""The newc writer: byte layout, padding, device nodes, determinism, and a round trip through read_newc."""

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from hil.image.cpio import HEADER_SIZE, CpioEntry, NewcWriter, encode_entry, read_newc


def _sample_archive() -> NewcWriter:
    archive = NewcWriter()
    archive.add_dir("/etc", 0o755)
    archive.add_file("/etc/hostname", b"hil\n", 0o644)
    archive.add_file("/init", b"#!/bin/sh\necho hi\n", 0o755)
    archive.add_symlink("/bin/sh", "busybox")
    archive.add_char_device("/dev/console", 5, 1)
    archive.add_char_device("/dev/null", 1, 3, 0o666)
    archive.add_char_device("/dev/ttyS0", 4, 64, 0o660)
    return archive


def _by_name(entries: list[CpioEntry]) -> dict[str, CpioEntry]:
    return {entry.name: entry for entry in entries}


def test_round_trip_keeps_names_modes_and_data() -> None:
    entries = _by_name(read_newc(_sample_archive().to_bytes()))
    assert entries["etc/hostname"].data == b"hil\n"
    assert entries["etc/hostname"].mode == stat.S_IFREG | 0o644
    assert entries["init"].mode == stat.S_IFREG | 0o755
    assert entries["bin/sh"].is_symlink and entries["bin/sh"].link_target == "busybox"
    assert entries["etc"].is_dir and entries["etc"].nlink == 2


def test_device_nodes_carry_major_and_minor() -> None:
    entries = _by_name(read_newc(_sample_archive().to_bytes()))
    console, null, serial = entries["dev/console"], entries["dev/null"], entries["dev/ttyS0"]
    assert console.is_char_device and (console.rdev_major, console.rdev_minor) == (5, 1)
    assert (null.rdev_major, null.rdev_minor) == (1, 3) and stat.S_IMODE(null.mode) == 0o666
    assert (serial.rdev_major, serial.rdev_minor) == (4, 64)
    assert console.data == b""


def test_missing_parents_are_added_before_children() -> None:
    archive = NewcWriter()
    archive.add_file("/usr/lib/x86_64-linux-gnu/libz.so.1", b"z")
    names = [entry.name for entry in read_newc(archive.to_bytes())]
    assert names == ["usr", "usr/lib", "usr/lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu/libz.so.1"]


def test_readding_a_directory_sets_its_mode_but_files_cannot_repeat() -> None:
    archive = NewcWriter()
    archive.add_file("/root/.ssh/authorized_keys", b"key", 0o600)
    archive.add_dir("/root", 0o700)
    assert stat.S_IMODE(_by_name(archive.entries())["root"].mode) == 0o700
    with pytest.raises(ValueError, match="added twice"):
        archive.add_file("/root/.ssh/authorized_keys", b"other")
    with pytest.raises(ValueError, match="not a directory"):
        archive.add_dir("/root/.ssh/authorized_keys")


def test_names_cannot_escape_the_archive() -> None:
    with pytest.raises(ValueError, match=r"\.\."):
        NewcWriter().add_file("/etc/../../x", b"")
    with pytest.raises(ValueError, match="root"):
        NewcWriter().add_dir("/")


def test_header_and_data_are_padded_to_four_bytes() -> None:
    for name_length in range(1, 9):
        for data_length in range(0, 9):
            entry = CpioEntry("n" * name_length, stat.S_IFREG | 0o644, b"d" * data_length)
            encoded = encode_entry(entry)
            assert len(encoded) % 4 == 0
            head = HEADER_SIZE + name_length + 1
            data_start = head + (4 - head % 4) % 4
            assert encoded[data_start : data_start + data_length] == b"d" * data_length
            assert set(encoded[head:data_start]) <= {0}
            assert set(encoded[data_start + data_length :]) <= {0}


def test_header_fields_are_fixed_width_hex() -> None:
    archive = NewcWriter()
    archive.add_file("/a", b"xyz", 0o640)
    encoded = archive.to_bytes()
    assert encoded.startswith(b"070701")
    fields = [encoded[6 + 8 * i : 14 + 8 * i] for i in range(13)]
    assert fields[0] == b"00000001"  # first inode
    assert int(fields[1], 16) == stat.S_IFREG | 0o640
    assert fields[2] == fields[3] == fields[5] == b"00000000"  # uid, gid, mtime
    assert int(fields[6], 16) == 3  # filesize
    assert int(fields[11], 16) == len(b"a\0")  # namesize counts the NUL


def test_archive_ends_with_the_trailer() -> None:
    encoded = _sample_archive().to_bytes()
    assert b"TRAILER!!!\0" in encoded[-128:]
    assert len(encoded) % 4 == 0


def test_inodes_are_sequential_and_metadata_fixed() -> None:
    entries = read_newc(_sample_archive().to_bytes())
    assert [entry.ino for entry in entries] == list(range(1, len(entries) + 1))
    assert {(entry.uid, entry.gid, entry.mtime) for entry in entries} == {(0, 0, 0)}


def test_identical_inputs_give_identical_bytes(tmp_path: Path) -> None:
    host_file = tmp_path / "payload"
    host_file.write_bytes(b"payload bytes")
    host_file.chmod(0o751)

    def build() -> bytes:
        archive = _sample_archive()
        archive.add_host_file("/opt/payload", host_file)
        return archive.to_bytes()

    first = build()
    host_file.touch()  # a newer mtime on the host must not matter
    assert build() == first
    assert stat.S_IMODE(_by_name(read_newc(first))["opt/payload"].mode) == 0o751


def test_write_to_stream_matches_to_bytes(tmp_path: Path) -> None:
    archive = _sample_archive()
    target = tmp_path / "out.cpio"
    with target.open("wb") as stream:
        written = archive.write_to(stream)
    assert target.read_bytes() == archive.to_bytes()
    assert written == target.stat().st_size


def test_reader_rejects_garbage_and_truncation() -> None:
    with pytest.raises(ValueError, match="magic"):
        read_newc(b"070707" + b"0" * 200)
    encoded = _sample_archive().to_bytes()
    with pytest.raises(ValueError, match="truncated"):
        read_newc(encoded[:-200])


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio is not installed")
def test_gnu_cpio_lists_the_same_members(tmp_path: Path) -> None:
    archive_path = tmp_path / "a.cpio"
    archive_path.write_bytes(_sample_archive().to_bytes())
    listing = subprocess.run(
        ["cpio", "-t", "--quiet", "-F", str(archive_path)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing == [entry.name for entry in read_newc(archive_path.read_bytes())]
