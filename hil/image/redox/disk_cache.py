"""Assembled Redox disks, kept by what went into them, so a run with the same inputs reuses one.

A Redox kernel run used to assemble its disk again every time (0.15 to 0.19 s of a run of a few seconds).
The key covers every input that reaches the disk: the packages the image takes from a local folder (their
metadata and archives, dependencies included), the local kernel and initfs, the disk size, and the source
of hil's own assembler. Disks are published read-only; every run boots them through its own overlay.
Packages from a URL are not cached by address (the repository behind it may change): those runs assemble
as before.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hil.cache import CacheArea
from hil.image.redox.assemble import assemble, default_packages
from hil.image.redox.repo import PackageRepo

DISKS = CacheArea("redox-disks", "waiting for another hil assembling the same Redox disk", lock_per_key=True,
                  limit_env="HIL_REDOX_DISK_CACHE_MB", default_limit_mb=2048)
DISK_NAME = "disk.img"
KEY_FORMAT = "redox-disk-1"


def assembled_disk(packages: str, size: int, kernel: Path | None, initfs: Path | None) -> Path | None:
    """The cached disk for these inputs, assembled now if it is new; None when the inputs cannot be keyed."""
    key = disk_key(packages, size, kernel, initfs)
    if key is None:
        return None

    def build(scratch: Path) -> Path:
        out = scratch / DISK_NAME
        assemble(packages=packages, out=out, size=size, kernel=kernel, initfs=initfs)
        return out

    return DISKS.make(key, build, read_only=True)


def disk_key(packages: str, size: int, kernel: Path | None, initfs: Path | None) -> str | None:
    folder = Path(packages)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256(f"{KEY_FORMAT}\0{size}\0".encode())
    for name in PackageRepo(folder).resolve(default_packages(kernel, initfs)):
        for suffix in (".toml", ".pkgar"):
            digest.update(f"{name}{suffix}\0".encode() + _file_digest(folder / f"{name}{suffix}"))
    for label, path in (("kernel", kernel), ("initfs", initfs)):
        digest.update(f"{label}\0".encode() + (_file_digest(path) if path else b"-"))
    digest.update(_assembler_digest())
    return digest.hexdigest()[:24]


def _file_digest(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").digest()
    except FileNotFoundError:
        return b"missing"


def _assembler_digest() -> bytes:
    """hil's own writers of the disk (a fix in one must not reuse disks it wrote wrongly)."""
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.digest()
