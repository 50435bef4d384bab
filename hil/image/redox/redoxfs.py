"""RedoxFS, version-neutral: the tree of files to write, the writer/reader interfaces, and version dispatch.

RedoxFS changes its on-disk format with its major version (v6 for redoxfs 0.6.x, v7 from 0.7 on; the
header's `version` field says which). The bootloader only reads the version it was built with, so callers
pick the version explicitly; `open_image` picks the reader from the header. A new version is one new module
beside `redoxfs_v6` that turns an `FsTree` into blocks and reads them back, and one entry in VERSIONS.
"""

from __future__ import annotations

import struct
from types import ModuleType
from typing import BinaryIO

from hil.errors import InfraError, UsageError
from hil.image.redox import redoxfs_v6
from hil.image.redox.redoxfs_model import (
    BLOCK_SIZE,
    DEFAULT_VERSION,
    MODE_DIR,
    MODE_FILE,
    MODE_PERM,
    MODE_SYMLINK,
    MODE_TYPE,
    SIGNATURE,
    FsEntry,
    FsNode,
    FsReader,
    FsStats,
    FsTree,
    FsWriter,
)

__all__ = ["BLOCK_SIZE", "DEFAULT_VERSION", "MODE_DIR", "MODE_FILE", "MODE_PERM", "MODE_SYMLINK", "MODE_TYPE",
           "SIGNATURE", "FsEntry", "FsNode", "FsReader", "FsStats", "FsTree", "FsWriter", "header_version",
           "new_tree", "new_writer", "open_image"]  # fmt: skip
VERSIONS: dict[int, ModuleType] = {6: redoxfs_v6}


def new_tree(version: int = DEFAULT_VERSION, now: float | None = None) -> FsTree:
    return FsTree(_module(version).MAX_NAME, now)


def new_writer(tree: FsTree, version: int = DEFAULT_VERSION) -> FsWriter:
    return _module(version).Writer(tree)


def header_version(image: BinaryIO, offset: int, slots: int = 256) -> int | None:
    """The version in the first header slot at `offset` that has RedoxFS's signature, or None if none has.

    Every version so far keeps signature and version at the start of a ring of header blocks."""
    for slot in range(slots):
        image.seek(offset + slot * BLOCK_SIZE)
        head = image.read(16)
        if len(head) < 16:
            return None
        if head[:8] == SIGNATURE:
            return struct.unpack_from("<Q", head, 8)[0]
    return None


def open_image(image: BinaryIO, offset: int, name: str) -> FsReader:
    """A reader for the RedoxFS at byte `offset` of `image`, of whatever version its header says."""
    version = header_version(image, offset)
    if version is None:
        raise InfraError(f"{name}: no RedoxFS header at byte {offset}")
    return _module(version, name).Reader(image, offset, name)


def _module(version: int, name: str = "RedoxFS") -> ModuleType:
    if version in VERSIONS:
        return VERSIONS[version]
    raise UsageError(f"{name}: RedoxFS version {version} is not supported (hil writes and reads version 6)")
