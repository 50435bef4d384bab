"""RedoxFS's version-neutral model: the tree of files to write, what a writer and a reader offer, and the
constants every on-disk version shares. Version modules (redoxfs_v6) build on it; hil.image.redox.redoxfs
picks one.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import BinaryIO

from hil.errors import UsageError

SIGNATURE = b"RedoxFS\0"
BLOCK_SIZE = 4096
DEFAULT_VERSION = 6
MODE_TYPE = 0o170000
MODE_FILE = 0o100000
MODE_DIR = 0o040000
MODE_SYMLINK = 0o120000
MODE_PERM = 0o7777


@dataclass
class FsNode:
    """A file, directory or symlink to be written; times are (seconds, nanoseconds)."""

    mode: int
    uid: int = 0
    gid: int = 0
    mtime: tuple[int, int] = (0, 0)
    data: bytes = b""  # file contents, or a symlink's target
    children: dict[str, FsNode] = field(default_factory=dict)

    @property
    def kind(self) -> int:
        return self.mode & MODE_TYPE

    @property
    def is_dir(self) -> bool:
        return self.kind == MODE_DIR


@dataclass(frozen=True)
class FsEntry:
    """One node as a reader found it; `path` is absolute ("/" is the root)."""

    path: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime: tuple[int, int]
    link_target: str | None = None

    @property
    def is_dir(self) -> bool:
        return self.mode & MODE_TYPE == MODE_DIR

    @property
    def is_symlink(self) -> bool:
        return self.mode & MODE_TYPE == MODE_SYMLINK


@dataclass(frozen=True)
class FsStats:
    """What a writer laid out: blocks used, bytes hashed, nodes."""

    total_blocks: int
    used_blocks: int
    nodes: int
    data_bytes: int


class FsTree:
    """The files of a file system before layout. Parents are created on demand; adding an existing path
    replaces it (later packages and --kernel/--add override earlier ones)."""

    def __init__(self, max_name: int, now: float | None = None, uid: int = 0, gid: int = 0) -> None:
        self.max_name = max_name
        self.default_mtime = _split_time(time.time() if now is None else now)
        self.root = FsNode(MODE_DIR | 0o755, uid, gid, self.default_mtime)

    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: float | None = None) -> None:
        parent, name = self._parent(path)
        existing = parent.children.get(name)
        node = FsNode(MODE_DIR | (mode & MODE_PERM), uid, gid, self._time(mtime))
        if existing is not None and existing.is_dir:
            node.children = existing.children
        parent.children[name] = node

    def add_file(
        self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: float | None = None
    ) -> None:
        self._put(path, FsNode(MODE_FILE | (mode & MODE_PERM), uid, gid, self._time(mtime), bytes(data)))

    def symlink(self, path: str, target: str | bytes, uid: int = 0, gid: int = 0, mtime: float | None = None) -> None:
        raw = target.encode() if isinstance(target, str) else bytes(target)  # bytes: kept exactly as packaged
        if not raw:
            raise UsageError(f"{path}: a symlink needs a target")
        self._put(path, FsNode(MODE_SYMLINK | 0o777, uid, gid, self._time(mtime), raw))

    def get(self, path: str) -> FsNode | None:
        node = self.root
        for name in _split(path):
            node = node.children.get(name) if node.is_dir else None
            if node is None:
                return None
        return node

    def walk(self) -> list[tuple[str, FsNode]]:
        """Every node with its absolute path, parents before children, names sorted."""
        found = [("/", self.root)]
        for path, node in found:
            for name in sorted(node.children):
                found.append((f"{path.rstrip('/')}/{name}", node.children[name]))
        return found

    def _put(self, path: str, node: FsNode) -> None:
        parent, name = self._parent(path)
        existing = parent.children.get(name)
        if existing is not None and existing.is_dir:
            raise UsageError(f"{path}: is a directory in the image, cannot replace it with a file")
        parent.children[name] = node

    def _parent(self, path: str) -> tuple[FsNode, str]:
        names = _split(path)
        if not names:
            raise UsageError(f"{path!r}: the root cannot be replaced")
        for name in names:
            self._check_name(name, path)
        node = self.root
        walked = ""
        for name in names[:-1]:
            walked += "/" + name
            child = node.children.get(name)
            if child is None:
                child = FsNode(MODE_DIR | 0o755, node.uid, node.gid, self.default_mtime)
                node.children[name] = child
            elif not child.is_dir:
                raise UsageError(f"{path}: {walked} is a file in the image, not a directory")
            node = child
        return node, names[-1]

    def _check_name(self, name: str, path: str) -> None:
        size = len(name.encode())
        if size > self.max_name:
            raise UsageError(f"{path}: the name {name[:40]!r}... is {size} bytes, RedoxFS allows {self.max_name}")
        if ":" in name or "\0" in name:
            raise UsageError(f"{path}: RedoxFS names cannot contain ':' or NUL")
        if name in (".", ".."):
            raise UsageError(f"{path}: '.' and '..' cannot be names in the image")

    def _time(self, mtime: float | None) -> tuple[int, int]:
        return self.default_mtime if mtime is None else _split_time(mtime)


def _split(path: str) -> list[str]:
    if not path.startswith("/"):
        raise UsageError(f"{path!r}: paths in the image are absolute (start with /)")
    return [name for name in path.split("/") if name]


def _split_time(seconds: float) -> tuple[int, int]:
    whole = int(seconds)
    return whole, round((seconds - whole) * 1e9) % 1_000_000_000


class FsWriter(ABC):
    """Lays an `FsTree` out as one RedoxFS version and writes it into a file at an offset."""

    version: int

    def __init__(self, tree: FsTree) -> None:
        self.tree = tree

    @abstractmethod
    def write(self, out: BinaryIO, offset: int, size: int, uuid: bytes) -> FsStats:
        """Write the whole file system (`size` bytes) at byte `offset` of `out`; unwritten space reads as zero."""


class FsReader(ABC):
    """Reads a RedoxFS back, checking every block hash it touches."""

    version: int

    @abstractmethod
    def entries(self) -> list[FsEntry]:
        """Every node, parents first, with paths sorted by name inside each directory."""

    @abstractmethod
    def read(self, path: str) -> bytes:
        """A file's contents (or a symlink's target)."""

    @abstractmethod
    def check(self) -> dict[str, int]:
        """Read everything and cross-check the allocation records; counts of what was seen."""
