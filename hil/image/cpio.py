"""A deterministic writer (and a small reader) for newc cpio archives, the format of Linux initramfs.

Every header is "070701" followed by thirteen 8-digit hex fields; the header plus the NUL-terminated name is
padded to 4 bytes, and so is the file data. The writer fixes mtime, uid, gid and the device of the archive
and numbers inodes in order, so the same entries always give the same bytes (and the same cache hashes).
"""

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

NEWC_MAGIC = b"070701"
TRAILER_NAME = "TRAILER!!!"
_FIELD_COUNT = 13
HEADER_SIZE = len(NEWC_MAGIC) + 8 * _FIELD_COUNT


@dataclass(frozen=True)
class CpioEntry:
    """One archive member; `name` has no leading slash, as the kernel's unpacker expects."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0
    ino: int = 0
    nlink: int = 1
    uid: int = 0
    gid: int = 0
    mtime: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_char_device(self) -> bool:
        return stat.S_ISCHR(self.mode)

    @property
    def link_target(self) -> str:
        return self.data.decode()


def _pad4(length: int) -> int:
    return (4 - length % 4) % 4


def _normalize(path: str) -> str:
    """Archive names are relative ("bin/sh"); accept "/bin/sh" and reject anything climbing out."""
    pure = PurePosixPath("/", path)
    if ".." in pure.parts:
        raise ValueError(f"cpio member name must not contain '..': {path!r}")
    relative = str(pure.relative_to("/"))
    if relative == ".":
        raise ValueError("cpio member name must not be the archive root")
    return relative


def encode_entry(entry: CpioEntry) -> bytes:
    """Header, name and data of one member, each padded as newc requires."""
    name = entry.name.encode() + b"\0"
    fields = (
        entry.ino,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.nlink,
        entry.mtime,
        len(entry.data),
        0,  # devmajor/devminor: the device holding the file, meaningless in an archive
        0,
        entry.rdev_major,
        entry.rdev_minor,
        len(name),
        0,  # check: only used by the "070702" CRC format
    )
    header = NEWC_MAGIC + b"".join(b"%08x" % field for field in fields)
    head = header + name
    return head + b"\0" * _pad4(len(head)) + entry.data + b"\0" * _pad4(len(entry.data))


class NewcWriter:
    """Collects members in order and writes them as one newc archive ending in TRAILER!!!.

    Missing parent directories are added automatically (mode 0755) because the kernel's unpacker does not
    create them. Adding the same path twice is an error, except re-adding a directory, which sets its mode.
    """

    def __init__(self) -> None:
        self._entries: dict[str, CpioEntry] = {}

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        name = _normalize(path)
        existing = self._entries.get(name)
        if existing is not None and not existing.is_dir:
            raise ValueError(f"cpio member {name!r} already exists and is not a directory")
        self._add_parents(name)
        self._entries[name] = CpioEntry(name, stat.S_IFDIR | (mode & 0o7777), nlink=2)

    def add_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._add_new(CpioEntry(_normalize(path), stat.S_IFREG | (mode & 0o7777), bytes(data)))

    def add_host_file(self, path: str, host_path: Path, mode: int | None = None) -> None:
        """Copy a host file's bytes (following symlinks); keep its permission bits unless `mode` is given."""
        resolved = Path(host_path)
        permissions = stat.S_IMODE(resolved.stat().st_mode) if mode is None else mode
        self.add_file(path, resolved.read_bytes(), permissions)

    def add_symlink(self, path: str, target: str) -> None:
        self._add_new(CpioEntry(_normalize(path), stat.S_IFLNK | 0o777, target.encode()))

    def add_char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        entry = CpioEntry(_normalize(path), stat.S_IFCHR | (mode & 0o7777), rdev_major=major, rdev_minor=minor)
        self._add_new(entry)

    def __contains__(self, path: str) -> bool:
        return _normalize(path) in self._entries

    def entries(self) -> list[CpioEntry]:
        """Members in archive order, with their final inode numbers (1, 2, 3...)."""
        return [_with_ino(entry, index) for index, entry in enumerate(self._entries.values(), start=1)]

    def iter_chunks(self) -> Iterator[bytes]:
        for entry in self.entries():
            yield encode_entry(entry)
        yield encode_entry(CpioEntry(TRAILER_NAME, 0))

    def write_to(self, stream: BinaryIO) -> int:
        written = 0
        for chunk in self.iter_chunks():
            written += stream.write(chunk)
        return written

    def to_bytes(self) -> bytes:
        return b"".join(self.iter_chunks())

    def _add_new(self, entry: CpioEntry) -> None:
        if entry.name in self._entries:
            raise ValueError(f"cpio member {entry.name!r} added twice")
        self._add_parents(entry.name)
        self._entries[entry.name] = entry

    def _add_parents(self, name: str) -> None:
        for parent in reversed(PurePosixPath(name).parents[:-1]):
            key = str(parent)
            existing = self._entries.get(key)
            if existing is None:
                self._entries[key] = CpioEntry(key, stat.S_IFDIR | 0o755, nlink=2)
            elif not existing.is_dir:
                raise ValueError(f"cpio member {key!r} is not a directory but {name!r} needs it as one")


def _with_ino(entry: CpioEntry, ino: int) -> CpioEntry:
    return CpioEntry(entry.name, entry.mode, entry.data, entry.rdev_major, entry.rdev_minor, ino, entry.nlink)


def read_newc(data: bytes) -> list[CpioEntry]:
    """Parse a newc archive up to its trailer (used by tests to check what the writer produced)."""
    entries: list[CpioEntry] = []
    offset = 0
    while True:
        entry, offset = _read_entry(data, offset)
        if entry.name == TRAILER_NAME:
            return entries
        entries.append(entry)


def _read_entry(data: bytes, offset: int) -> tuple[CpioEntry, int]:
    header = data[offset : offset + HEADER_SIZE]
    if len(header) < HEADER_SIZE:
        raise ValueError(f"truncated cpio archive at offset {offset} (no trailer)")
    if header[:6] != NEWC_MAGIC:
        raise ValueError(f"bad cpio magic {header[:6]!r} at offset {offset}")
    fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(_FIELD_COUNT)]
    ino, mode, uid, gid, nlink, mtime, filesize, _, _, rdev_major, rdev_minor, namesize, _ = fields
    name_start = offset + HEADER_SIZE
    name = data[name_start : name_start + namesize - 1].decode()
    data_start = name_start + namesize
    data_start += _pad4(data_start - offset)
    body = data[data_start : data_start + filesize]
    if len(body) < filesize:
        raise ValueError(f"truncated data for cpio member {name!r}")
    end = data_start + filesize + _pad4(filesize)
    return CpioEntry(name, mode, body, rdev_major, rdev_minor, ino, nlink, uid, gid, mtime), end
