"""A tiny FAT12/FAT16 writer for the EFI system partition: directories and files with 8.3 names only.

The installer formats a 1 MiB EFI partition and puts the UEFI loader at EFI/BOOT/BOOTX64.EFI; UEFI firmware
reads any valid FAT, so this writes the simplest one: 512-byte sectors, one reserved sector, two FATs,
a fixed root directory, clusters allocated contiguously in path order.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from hil.errors import UsageError

SECTOR = 512
DIR_ENTRY = 32
ROOT_ENTRIES = 512
ATTR_DIRECTORY = 0x10
ATTR_ARCHIVE = 0x20
FAT12_MAX_CLUSTERS = 4084
FAT16_MAX_CLUSTERS = 65524
_SHORT_NAME_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'()-@^_`{}~")


@dataclass
class _Dir:
    entries: dict[str, _Dir | bytes] = field(default_factory=dict)
    cluster: int = 0


def short_name(name: str) -> bytes:
    """The 11-byte 8.3 directory name of `name`, which must already be a valid upper-case 8.3 name."""
    base, _, ext = name.partition(".")
    valid = base and len(base) <= 8 and len(ext) <= 3 and set(base + ext) <= _SHORT_NAME_CHARS
    if not valid:
        raise UsageError(f"{name!r}: the EFI partition writer takes upper-case 8.3 names only")
    return base.encode().ljust(8) + ext.encode().ljust(3)


def build_fat(size: int, files: dict[str, bytes], label: str = "NO NAME", mtime: float | None = None) -> bytes:
    """A FAT volume of `size` bytes holding `files` (paths like "EFI/BOOT/BOOTX64.EFI")."""
    root = _tree(files)
    geometry = _Geometry(size)
    clusters = _Clusters(geometry)
    stamp = _dos_time(time.time() if mtime is None else mtime)
    root_dir = _lay_out(root, clusters, parent_cluster=0, stamp=stamp, is_root=True)
    volume = bytearray(size)
    volume[:SECTOR] = geometry.boot_sector(label)
    fat = clusters.table()
    for copy in range(2):
        start = (1 + copy * geometry.fat_sectors) * SECTOR
        volume[start : start + len(fat)] = fat
    root_start = geometry.root_sector * SECTOR
    volume[root_start : root_start + len(root_dir)] = root_dir
    for cluster, data in clusters.contents.items():
        start = geometry.cluster_offset(cluster)
        volume[start : start + len(data)] = data
    return bytes(volume)


def _tree(files: dict[str, bytes]) -> _Dir:
    root = _Dir()
    for path, data in files.items():
        node = root
        *dirs, name = [part for part in path.split("/") if part]
        for part in dirs:
            child = node.entries.setdefault(part, _Dir())
            if not isinstance(child, _Dir):
                raise UsageError(f"{path}: {part} is a file")
            node = child
        node.entries[name] = data
    return root


class _Geometry:
    def __init__(self, size: int) -> None:
        self.total_sectors = size // SECTOR
        self.root_sectors = ROOT_ENTRIES * DIR_ENTRY // SECTOR
        self.sectors_per_cluster = 1 if size <= 16 << 20 else 4
        self.fat_sectors = 1
        for _ in range(4):  # the FAT's size and the cluster count depend on each other; this settles quickly
            self.clusters = self._cluster_count()
            self.fat_bits = 12 if self.clusters <= FAT12_MAX_CLUSTERS else 16
            fat_bytes = -(-((self.clusters + 2) * self.fat_bits) // 8)
            self.fat_sectors = -(-fat_bytes // SECTOR)
        self.clusters = self._cluster_count()
        if self.clusters > FAT16_MAX_CLUSTERS or self.clusters < 16:
            raise UsageError(f"an EFI partition of {size} bytes is outside what this FAT writer supports")

    def data_start_sector_for(self, fat_sectors: int) -> int:
        return 1 + 2 * fat_sectors + self.root_sectors

    def _cluster_count(self) -> int:
        data_sectors = self.total_sectors - self.data_start_sector_for(self.fat_sectors)
        return data_sectors // self.sectors_per_cluster

    @property
    def root_sector(self) -> int:
        return 1 + 2 * self.fat_sectors

    @property
    def cluster_size(self) -> int:
        return self.sectors_per_cluster * SECTOR

    def cluster_offset(self, cluster: int) -> int:
        first_data = self.data_start_sector_for(self.fat_sectors)
        return (first_data + (cluster - 2) * self.sectors_per_cluster) * SECTOR

    def boot_sector(self, label: str) -> bytes:
        sector = bytearray(SECTOR)
        sector[0:3] = b"\xeb\x3c\x90"  # jmp over the BPB, as every FAT boot sector starts
        small_total = self.total_sectors if self.total_sectors < 0x10000 else 0
        large_total = 0 if small_total else self.total_sectors
        struct.pack_into(
            "<8sHBHBHHBHHHII", sector, 3, b"MSWIN4.1", SECTOR, self.sectors_per_cluster, 1, 2, ROOT_ENTRIES,
            small_total, 0xF8, self.fat_sectors, 32, 2, 0, large_total,
        )  # fmt: skip
        fs_type = b"FAT12   " if self.fat_bits == 12 else b"FAT16   "
        volume_label = label.upper().encode()[:11].ljust(11)
        struct.pack_into("<BBBI11s8s", sector, 36, 0x80, 0, 0x29, 0x1D0C0FFE, volume_label, fs_type)
        sector[510:512] = b"\x55\xaa"
        return bytes(sector)


class _Clusters:
    """Hands out clusters in order and records each chain for the FAT."""

    def __init__(self, geometry: _Geometry) -> None:
        self.geometry = geometry
        self.next = 2
        self.chains: list[tuple[int, int]] = []
        self.contents: dict[int, bytes] = {}

    def store(self, data: bytes) -> int:
        if not data:
            return 0
        count = -(-len(data) // self.geometry.cluster_size)
        first = self.next
        if first + count - 2 > self.geometry.clusters:
            raise UsageError(f"the EFI partition is too small for {len(data)} more bytes")
        self.next += count
        self.chains.append((first, count))
        self.contents[first] = data
        return first

    def table(self) -> bytes:
        entries = [0xFF8 | (0xFFF0 if self.geometry.fat_bits == 16 else 0xF00), 0xFFFF]
        entries += [0] * (self.geometry.clusters)
        end_mark = 0xFFFF if self.geometry.fat_bits == 16 else 0xFFF
        for first, count in self.chains:
            for cluster in range(first, first + count - 1):
                entries[cluster] = cluster + 1
            entries[first + count - 1] = end_mark
        return _pack_fat(entries, self.geometry.fat_bits)


def _pack_fat(entries: list[int], bits: int) -> bytes:
    if bits == 16:
        return struct.pack(f"<{len(entries)}H", *[e & 0xFFFF for e in entries])
    if len(entries) % 2:
        entries = [*entries, 0]
    packed = bytearray()
    for low, high in zip(entries[0::2], entries[1::2], strict=True):
        low, high = low & 0xFFF, high & 0xFFF
        packed += bytes((low & 0xFF, (low >> 8) | ((high & 0xF) << 4), high >> 4))
    return bytes(packed)


def _lay_out(directory: _Dir, clusters: _Clusters, parent_cluster: int, stamp: tuple[int, int], is_root: bool) -> bytes:
    """The directory's entry bytes; subdirectories and files get their clusters on the way."""
    names = sorted(directory.entries)
    own_size = (len(names) + (0 if is_root else 2)) * DIR_ENTRY
    if is_root and len(names) > ROOT_ENTRIES:
        raise UsageError("too many files in the EFI partition's root")
    if not is_root:  # reserve our clusters first so "." can name them
        directory.cluster = clusters.store(bytes(max(own_size, 1)))
    entries = bytearray()
    if not is_root:
        entries += _entry(b".          ", ATTR_DIRECTORY, directory.cluster, 0, stamp)
        entries += _entry(b"..         ", ATTR_DIRECTORY, parent_cluster, 0, stamp)
    for name in names:
        child = directory.entries[name]
        if isinstance(child, _Dir):
            body = _lay_out(child, clusters, directory.cluster, stamp, is_root=False)
            clusters.contents[child.cluster] = body
            entries += _entry(short_name(name), ATTR_DIRECTORY, child.cluster, 0, stamp)
        else:
            entries += _entry(short_name(name), ATTR_ARCHIVE, clusters.store(child), len(child), stamp)
    return bytes(entries)


def _entry(name: bytes, attributes: int, cluster: int, size: int, stamp: tuple[int, int]) -> bytes:
    dos_time, dos_date = stamp
    return struct.pack(
        "<11sBBBHHHHHHHI", name, attributes, 0, 0, dos_time, dos_date, dos_date, cluster >> 16, dos_time,
        dos_date, cluster & 0xFFFF, size,
    )  # fmt: skip


def _dos_time(seconds: float) -> tuple[int, int]:
    moment = time.gmtime(max(seconds, 315532800))  # FAT dates start in 1980
    dos_time = (moment.tm_hour << 11) | (moment.tm_min << 5) | (moment.tm_sec // 2)
    dos_date = ((moment.tm_year - 1980) << 9) | (moment.tm_mon << 5) | moment.tm_mday
    return dos_time, dos_date
