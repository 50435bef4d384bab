"""RedoxFS version 6 (redoxfs 0.6.x), the format the BIOS bootloader of mid-2025 reads (it links redoxfs 0.6.7).

On-disk facts (all little endian, from redoxfs 0.6.7's header.rs, block.rs, node.rs, tree.rs, dir.rs,
allocator.rs and transaction.rs):
- Blocks are 4 KiB; a block *level* L means 2^L consecutive blocks. Block numbers count from the start of
  the file system (the installer puts it at 2 MiB of the disk).
- Block pointer, 16 bytes: u64 `index << 4 | level`, u64 seahash of the whole (4096 << level)-byte block.
  A pointer with index 0 is null and reads as zeros.
- Header (blocks 0..255 are a ring; generation g lives in slot g % 256, the newest valid one wins):
  signature "RedoxFS\\0", u64 version = 6, uuid[16], u64 size in bytes, u64 generation, tree pointer,
  alloc pointer, 64 key slots of 32 bytes (zero when unencrypted), padding to byte 4072, 16 bytes
  "encrypted hash" (the plain hash + zeros when unencrypted), u64 seahash of bytes 0..4072.
- Tree: four levels of 256-pointer lists; node id = i3<<24 | i2<<16 | i1<<8 | i0, id 0 is reserved, the
  root directory is id 1. Leaves point at node blocks.
- Node, 4 KiB: u16 mode, u32 uid, u32 gid, u32 links, u64 size, ctime u64+u32 ns, mtime u64+u32 ns,
  atime u64+u32 ns, u32 record_level, 2 bytes padding, then 128 direct record pointers and 64/32/16/12
  pointers to 1- to 4-deep lists of 256 pointers. Files use 128 KiB records (record_level 5); directories
  and symlinks 4 KiB records (record_level 0). A record is stored at the smallest level that holds its
  bytes, and all-zero records stay null, as redoxfs' own writer does.
- Directory records: 16 entries of u32 node id + 252-byte NUL-padded name; id 0 is an empty slot; there
  are no "." or ".." entries; size = records * 4096. Every link adds one to the target's `links` (the root
  has 1).
- Allocation log: AllocList blocks (prev pointer + 255 entries of u64 index, i64 count); a positive count
  frees blocks, a negative one allocates them, replayed from the oldest list. mkfs leaves block 256 unused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from hil.errors import InfraError, UsageError
from hil.image.redox import seahash
from hil.image.redox.redoxfs_model import (
    BLOCK_SIZE,
    MODE_DIR,
    MODE_FILE,
    MODE_SYMLINK,
    MODE_TYPE,
    SIGNATURE,
    FsEntry,
    FsNode,
    FsReader,
    FsStats,
    FsWriter,
)

VERSION = 6
HEADER_RING = 256
FIRST_FREE_BLOCK = HEADER_RING + 1
MAX_NAME = 252
RECORD_LEVEL = 5
RECORD_SIZE = BLOCK_SIZE << RECORD_LEVEL
LIST_ENTRIES = 256
DIRECT_RECORDS = 128
INDIRECT_COUNTS = (64, 32, 16, 12)  # pointers to 1-, 2-, 3- and 4-deep lists in a node
DIR_ENTRIES_PER_BLOCK = BLOCK_SIZE // 256
ALLOC_ENTRIES = (BLOCK_SIZE - 16) // 16
HASHED_HEADER_BYTES = 4072
MAX_LEVEL = 15

_PTR = struct.Struct("<QQ")
_NODE = struct.Struct("<HIIIQQIQIQII2x")
_HEADER = struct.Struct("<8sQ16sQQ16s16s")
_DIR_ENTRY = struct.Struct("<I252s")
_ALLOC_ENTRY = struct.Struct("<Qq")
_NULL_PTR = bytes(16)


def level_for(size: int) -> int:
    """The smallest block level whose blocks hold `size` bytes."""
    blocks = max(1, -(-size // BLOCK_SIZE))
    return (blocks - 1).bit_length()


# --- layout ---------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Block:
    """A block to place: its level, its bytes once known, its address and pointer once laid out."""

    level: int
    data: bytes = b""
    index: int = 0
    ptr: bytes = _NULL_PTR


@dataclass(eq=False)
class _List(_Block):
    """A list of 256 pointers (tree level or a node's indirect records); children by slot."""

    depth: int = 1
    children: dict[int, _Block] = field(default_factory=dict)


@dataclass(eq=False)
class _NodeLayout:
    node: FsNode
    id: int
    record_level: int
    size: int
    block: _Block = field(default_factory=lambda: _Block(0))
    direct: dict[int, _Block] = field(default_factory=dict)
    indirect: tuple[dict[int, _List], ...] = field(default_factory=lambda: ({}, {}, {}, {}))


class _Allocator:
    """Bump allocation with natural alignment (a level-L block starts at a multiple of 2^L, as redoxfs' buddy
    allocator keeps them); skipped space is remembered and filled by smaller blocks first."""

    def __init__(self, first: int, total: int) -> None:
        self.next = first
        self.total = total
        self.gaps: list[tuple[int, int]] = []

    def allocate(self, level: int) -> int:
        size = 1 << level
        for position, (start, end) in enumerate(self.gaps):
            aligned = -(-start // size) * size
            if aligned + size <= end:
                self._split_gap(position, aligned, aligned + size)
                return aligned
        aligned = -(-self.next // size) * size
        if aligned + size > self.total:
            raise _Full()
        if aligned > self.next:
            self.gaps.append((self.next, aligned))
        self.next = aligned + size
        return aligned

    def _split_gap(self, position: int, start: int, end: int) -> None:
        gap_start, gap_end = self.gaps.pop(position)
        pieces = [(gap_start, start), (end, gap_end)]
        self.gaps[position:position] = [(a, b) for a, b in pieces if b > a]

    def free_ranges(self) -> list[tuple[int, int]]:
        tail = [(self.next, self.total)] if self.next < self.total else []
        return sorted(self.gaps) + tail


class _Full(Exception):
    pass


class Writer(FsWriter):
    """Lays out an `FsTree` as RedoxFS v6 in one pass: place every block, then hash bottom-up."""

    version = VERSION

    def write(self, out: BinaryIO, offset: int, size: int, uuid: bytes) -> FsStats:
        total = size // BLOCK_SIZE
        if total < FIRST_FREE_BLOCK + 4:
            raise UsageError(f"a RedoxFS needs at least {(FIRST_FREE_BLOCK + 4) * BLOCK_SIZE} bytes, got {size}")
        nodes = self._layout_nodes()
        trees = _tree_lists(nodes)
        allocator = _Allocator(FIRST_FREE_BLOCK, total)
        try:
            _place(nodes, trees, allocator)
            alloc_lists = _place_alloc_lists(allocator)
        except _Full:
            raise UsageError(f"the files do not fit in a RedoxFS of {size >> 20} MiB; give a bigger --size") from None
        _hash_records(nodes)
        _hash_indirect_lists(nodes)
        _hash_nodes(nodes)
        tree_root = _hash_tree(trees)
        alloc_ptr = _fill_alloc_lists(alloc_lists, allocator.free_ranges())
        header = build_header(uuid, size, 0, tree_root.ptr, alloc_ptr)
        blocks = _all_blocks(nodes, trees, alloc_lists)
        _write_blocks(out, offset, header, blocks)
        used = sum(1 << block.level for block in blocks)
        data = sum(len(n.node.data) for n in nodes if n.node.kind == MODE_FILE)
        return FsStats(total_blocks=total, used_blocks=used + FIRST_FREE_BLOCK, nodes=len(nodes), data_bytes=data)

    def _layout_nodes(self) -> list[_NodeLayout]:
        walked = self.tree.walk()
        ids = {id(node): number for number, (_, node) in enumerate(walked, start=1)}
        layouts = []
        for path, node in walked:
            records, record_level, size = _records(node, ids, path)
            layout = _NodeLayout(node, ids[id(node)], record_level, size)
            for record_index, record in records:
                _attach(layout, record_index, record, path)
            layouts.append(layout)
        return layouts


def _records(node: FsNode, ids: dict[int, int], path: str) -> tuple[list[tuple[int, _Block]], int, int]:
    """(record index, block) pairs of a node's data, its record level and its size in bytes."""
    if node.is_dir:
        raw = b"".join(_DIR_ENTRY.pack(ids[id(child)], name.encode()) for name, child in sorted(node.children.items()))
        raw += bytes(-len(raw) % BLOCK_SIZE)
        return _chunk(raw, BLOCK_SIZE), 0, len(raw)
    if node.kind == MODE_FILE:
        return _chunk(node.data, RECORD_SIZE), RECORD_LEVEL, len(node.data)
    if node.kind == MODE_SYMLINK:
        return _chunk(node.data, BLOCK_SIZE), 0, len(node.data)
    raise UsageError(f"{path}: mode {node.mode:#o} is not a file, directory or symlink")


def _chunk(data: bytes, record_size: int) -> list[tuple[int, _Block]]:
    records = []
    for start in range(0, len(data), record_size):
        piece = data[start : start + record_size]
        if piece.count(0) == len(piece):
            continue  # all zero: a null pointer reads as zeros, so redoxfs never stores such records
        level = level_for(len(piece))
        records.append((start // record_size, _Block(level, piece + bytes((BLOCK_SIZE << level) - len(piece)))))
    return records


def _attach(layout: _NodeLayout, record_index: int, record: _Block, path: str) -> None:
    """Hook a record into the node: direct pointer, or a slot in a 1- to 4-deep list (redoxfs' NodeLevel)."""
    if record_index < DIRECT_RECORDS:
        layout.direct[record_index] = record
        return
    rest = record_index - DIRECT_RECORDS
    for depth, count in enumerate(INDIRECT_COUNTS, start=1):
        span = LIST_ENTRIES**depth
        if rest < count * span:
            top, rest = divmod(rest, span)
            table = layout.indirect[depth - 1].setdefault(top, _List(0, depth=depth))
            while table.depth > 1:
                slot, rest = divmod(rest, LIST_ENTRIES ** (table.depth - 1))
                table = table.children.setdefault(slot, _List(0, depth=table.depth - 1))  # type: ignore[assignment]
            table.children[rest] = record
            return
        rest -= count * span
    raise UsageError(f"{path}: too large for a RedoxFS node")


def _tree_lists(nodes: list[_NodeLayout]) -> _List:
    """The 4-level tree: root list (depth 4) down to leaf lists (depth 1) whose slots hold node blocks."""
    root = _List(0, depth=4)
    for layout in nodes:
        table = root
        for shift in (24, 16, 8):
            slot = (layout.id >> shift) & 0xFF
            table = table.children.setdefault(slot, _List(0, depth=table.depth - 1))  # type: ignore[assignment]
        table.children[layout.id & 0xFF] = layout.block
    return root


def _lists_of(tables: dict[int, _List] | _List) -> list[_List]:
    """Every list under (and including) the given ones, deepest first."""
    found = list(tables.values()) if isinstance(tables, dict) else [tables]
    for table in found:
        found.extend(child for child in table.children.values() if isinstance(child, _List))
    return sorted(found, key=lambda table: table.depth)


def _data_records(nodes: list[_NodeLayout]) -> list[_Block]:
    records = [record for layout in nodes for record in layout.direct.values()]
    for table in _indirect_lists(nodes):
        records.extend(child for child in table.children.values() if not isinstance(child, _List))
    return records


def _indirect_lists(nodes: list[_NodeLayout]) -> list[_List]:
    return [table for layout in nodes for tables in layout.indirect for table in _lists_of(tables)]


def _place(nodes: list[_NodeLayout], trees: _List, allocator: _Allocator) -> None:
    records = _data_records(nodes)
    # largest first keeps every block naturally aligned with no gaps beyond the first
    for record in sorted(records, key=lambda block: -block.level):
        record.index = allocator.allocate(record.level)
    metadata: list[_Block] = [layout.block for layout in nodes]
    metadata.extend(_indirect_lists(nodes))
    metadata.extend(_lists_of(trees))
    for block in metadata:
        block.index = allocator.allocate(0)


def _place_alloc_lists(allocator: _Allocator) -> list[_Block]:
    """Enough AllocList blocks for the free ranges; placing them never adds a range, so the count holds."""
    needed = max(1, -(-len(allocator.free_ranges()) // ALLOC_ENTRIES))
    return [_Block(0, index=allocator.allocate(0)) for _ in range(needed)]


def _pointer(block: _Block, digest: int) -> bytes:
    return _PTR.pack(block.index << 4 | block.level, digest)


def _hash_blocks(blocks: list[_Block]) -> None:
    for block, digest in zip(blocks, seahash.hash_many([b.data for b in blocks]), strict=True):
        block.ptr = _pointer(block, digest)


def _hash_records(nodes: list[_NodeLayout]) -> None:
    _hash_blocks(_data_records(nodes))


def _list_bytes(table: _List) -> bytes:
    raw = bytearray(BLOCK_SIZE)
    for slot, child in table.children.items():
        raw[slot * 16 : slot * 16 + 16] = child.ptr
    return bytes(raw)


def _hash_list_levels(tables: list[_List]) -> None:
    """Hash lists depth by depth, so every child pointer is known before its parent is filled."""
    for depth in sorted({table.depth for table in tables}):
        level = [table for table in tables if table.depth == depth]
        for table in level:
            table.data = _list_bytes(table)
        _hash_blocks(level)


def _hash_indirect_lists(nodes: list[_NodeLayout]) -> None:
    _hash_list_levels(_indirect_lists(nodes))


def _hash_nodes(nodes: list[_NodeLayout]) -> None:
    for layout in nodes:
        layout.block.data = _node_bytes(layout)
    _hash_blocks([layout.block for layout in nodes])


def _node_bytes(layout: _NodeLayout) -> bytes:
    node = layout.node
    seconds, nanos = node.mtime
    raw = bytearray(BLOCK_SIZE)
    _NODE.pack_into(
        raw, 0, node.mode, node.uid, node.gid, 1, layout.size, seconds, nanos, seconds, nanos, seconds, nanos,
        layout.record_level,
    )  # fmt: skip
    for slot, record in layout.direct.items():
        raw[64 + slot * 16 : 80 + slot * 16] = record.ptr
    base = 64 + DIRECT_RECORDS * 16
    for tables, count in zip(layout.indirect, INDIRECT_COUNTS, strict=True):
        for slot, table in tables.items():
            raw[base + slot * 16 : base + slot * 16 + 16] = table.ptr
        base += count * 16
    return bytes(raw)


def _hash_tree(root: _List) -> _List:
    _hash_list_levels(_lists_of(root))
    return root


def _fill_alloc_lists(alloc_lists: list[_Block], free: list[tuple[int, int]]) -> bytes:
    """Write the free ranges as positive (freeing) entries; lists chain through `prev`, the header points
    at the last one."""
    prev = _NULL_PTR
    for number, block in enumerate(alloc_lists):
        chunk = free[number * ALLOC_ENTRIES : (number + 1) * ALLOC_ENTRIES]
        raw = bytearray(BLOCK_SIZE)
        raw[:16] = prev
        for slot, (start, end) in enumerate(chunk):
            _ALLOC_ENTRY.pack_into(raw, 16 + slot * 16, start, end - start)
        block.data = bytes(raw)
        _hash_blocks([block])
        prev = block.ptr
    return prev


def build_header(uuid: bytes, size: int, generation: int, tree_ptr: bytes, alloc_ptr: bytes) -> bytes:
    """A header block: fields, zero key slots and padding, then the (unencrypted) hash twice."""
    if len(uuid) != 16:
        raise ValueError("a RedoxFS uuid is 16 bytes")
    raw = bytearray(BLOCK_SIZE)
    _HEADER.pack_into(raw, 0, SIGNATURE, VERSION, uuid, size, generation, tree_ptr, alloc_ptr)
    digest = seahash.hash(bytes(raw[:HASHED_HEADER_BYTES])).to_bytes(8, "little")
    raw[HASHED_HEADER_BYTES : HASHED_HEADER_BYTES + 8] = digest  # encrypted hash = plain hash when unencrypted
    raw[BLOCK_SIZE - 8 :] = digest
    return bytes(raw)


def _all_blocks(nodes: list[_NodeLayout], trees: _List, alloc_lists: list[_Block]) -> list[_Block]:
    blocks = _data_records(nodes) + [layout.block for layout in nodes] + _indirect_lists(nodes)
    blocks.extend(_lists_of(trees))
    blocks.extend(alloc_lists)
    return blocks


def _write_blocks(out: BinaryIO, offset: int, header: bytes, blocks: list[_Block]) -> None:
    """Header slot 0 plus an empty ring (no stale header may outrank it), then the blocks in address order,
    contiguous runs in one write."""
    out.seek(offset)
    out.write(header + bytes((HEADER_RING - 1) * BLOCK_SIZE))
    run_start, run_end, run = 0, 0, []
    for block in sorted(blocks, key=lambda b: b.index):
        if run and block.index != run_end:
            _write_run(out, offset, run_start, run)
            run = []
        if not run:
            run_start = block.index
        run.append(block.data)
        run_end = block.index + (1 << block.level)
    if run:
        _write_run(out, offset, run_start, run)


def _write_run(out: BinaryIO, offset: int, start: int, pieces: list[bytes]) -> None:
    out.seek(offset + start * BLOCK_SIZE)
    out.write(b"".join(pieces))


# --- reader ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    uuid: bytes
    size: int
    generation: int
    tree: bytes
    alloc: bytes
    slot: int


@dataclass
class _NodeData:
    mode: int
    uid: int
    gid: int
    links: int
    size: int
    mtime: tuple[int, int]
    record_level: int
    raw: bytes


class Reader(FsReader):
    """Reads what a v6 writer (ours or redoxfs') wrote; every block read is checked against its pointer's hash.
    `used_blocks` collects each block reached, so `check()` can compare them with the allocation log."""

    version = VERSION

    def __init__(self, image: BinaryIO, offset: int, name: str) -> None:
        self.image = image
        self.offset = offset
        self.name = name
        self.header = self._newest_header()
        self.used_blocks: set[int] = set()
        self._nodes: dict[int, _NodeData] = {}  # the image is read as a snapshot: each node once
        self._dirs: dict[int, list[tuple[str, int]]] = {}

    def entries(self) -> list[FsEntry]:
        found = [self._entry("/", self._node(1))]
        queue = [("/", 1)]
        while queue:
            path, node_id = queue.pop(0)
            for name, child_id in self._dir_entries(node_id, path):
                child_path = f"{path.rstrip('/')}/{name}"
                child = self._node(child_id)
                found.append(self._entry(child_path, child))
                if child.mode & MODE_TYPE == MODE_DIR:
                    queue.append((child_path, child_id))
        return found

    def read(self, path: str) -> bytes:
        node = self._node(self._lookup(path))
        if node.mode & MODE_TYPE == MODE_DIR:
            raise UsageError(f"{self.name}:{path} is a directory")
        return self._contents(node, path)

    def check(self) -> dict[str, int]:
        """Read every node and record, then check the allocation log frees none of them; counts of what was seen."""
        self.used_blocks, self._nodes, self._dirs = set(), {}, {}
        files = 0
        for entry in self.entries():
            if not entry.is_dir:
                self.read(entry.path)
                files += 1
        free = self._free_blocks()
        overlap = free & self.used_blocks
        if overlap:
            raise InfraError(f"{self.name}: {len(overlap)} blocks in use are also free, e.g. {min(overlap)}")
        total = self.header.size // BLOCK_SIZE
        if free and (min(free) < FIRST_FREE_BLOCK or max(free) >= total):
            raise InfraError(f"{self.name}: the allocation log frees blocks outside {FIRST_FREE_BLOCK}..{total - 1}")
        return {"files": files, "used_blocks": len(self.used_blocks), "free_blocks": len(free), "blocks": total}

    # --- blocks -------------------------------------------------------------------------------------------------

    def _newest_header(self) -> Header:
        best: Header | None = None
        versions = set()
        for slot in range(HEADER_RING):
            raw = self._read_at(slot, BLOCK_SIZE)
            if raw[:8] != SIGNATURE:
                continue
            _, version, uuid, size, generation, tree, alloc = _HEADER.unpack_from(raw)
            versions.add(version)
            digest = int.from_bytes(raw[BLOCK_SIZE - 8 :], "little")
            if version != VERSION or digest != seahash.hash(raw[:HASHED_HEADER_BYTES]):
                continue
            if raw[HASHED_HEADER_BYTES : HASHED_HEADER_BYTES + 16] != raw[BLOCK_SIZE - 8 :] + bytes(8):
                raise InfraError(f"{self.name}: the RedoxFS is encrypted; hil reads only unencrypted ones")
            if best is None or generation > best.generation:
                best = Header(uuid, size, generation, tree, alloc, slot)
        if best is None:
            found = f"versions {sorted(versions)}" if versions else "no signature"
            raise InfraError(f"{self.name}: no valid RedoxFS v{VERSION} header at byte {self.offset} ({found})")
        return best

    def _read_at(self, index: int, size: int) -> bytes:
        self.image.seek(self.offset + index * BLOCK_SIZE)
        raw = self.image.read(size)
        if len(raw) != size:
            raise InfraError(f"{self.name}: block {index} lies past the end of the image")
        return raw

    def _block(self, ptr: bytes, what: str) -> bytes | None:
        """The block a pointer names, hash-checked; None for a null pointer."""
        address, digest = _PTR.unpack(ptr)
        index, level = address >> 4, address & 0xF
        if index == 0:
            return None
        raw = self._read_at(index, BLOCK_SIZE << level)
        if seahash.hash(raw) != digest:
            raise InfraError(f"{self.name}: bad seahash of block {index} ({what})")
        self.used_blocks.update(range(index, index + (1 << level)))
        return raw

    def _required(self, ptr: bytes, what: str) -> bytes:
        raw = self._block(ptr, what)
        if raw is None:
            raise InfraError(f"{self.name}: null pointer where {what} should be")
        return raw

    # --- nodes --------------------------------------------------------------------------------------------------

    def _node(self, node_id: int) -> _NodeData:
        if node_id not in self._nodes:
            self._nodes[node_id] = self._read_node(node_id)
        return self._nodes[node_id]

    def _read_node(self, node_id: int) -> _NodeData:
        table = self._required(self.header.tree, "the tree root")
        for shift in (24, 16, 8, 0):
            slot = (node_id >> shift) & 0xFF
            table = self._required(table[slot * 16 : slot * 16 + 16], f"tree entry of node {node_id}")
        mode, uid, gid, links, size, _, _, mtime, mtime_ns, _, _, record_level = _NODE.unpack_from(table)
        return _NodeData(mode, uid, gid, links, size, (mtime, mtime_ns), record_level, table)

    def _entry(self, path: str, node: _NodeData) -> FsEntry:
        target = None
        if node.mode & MODE_TYPE == MODE_SYMLINK:
            target = self._contents(node, path).decode(errors="replace")
        return FsEntry(path, node.mode, node.uid, node.gid, node.size, node.mtime, target)

    def _record_ptrs(self, node: _NodeData, count: int) -> list[bytes]:
        """Pointers of a node's first `count` records, following the indirect lists (null lists read as empty)."""
        ptrs = [node.raw[64 + i * 16 : 80 + i * 16] for i in range(min(count, DIRECT_RECORDS))]
        base = 64 + DIRECT_RECORDS * 16
        for depth, slots in enumerate(INDIRECT_COUNTS, start=1):
            for slot in range(slots):
                if len(ptrs) >= count:
                    return ptrs
                list_ptr = node.raw[base + slot * 16 : base + slot * 16 + 16]
                ptrs.extend(self._list_ptrs(list_ptr, depth, count - len(ptrs)))
            base += slots * 16
        return ptrs[:count]

    def _list_ptrs(self, ptr: bytes, depth: int, wanted: int) -> list[bytes]:
        span = LIST_ENTRIES ** (depth - 1)
        table = self._block(ptr, "an indirect list")
        if table is None:
            return [_NULL_PTR] * min(wanted, span * LIST_ENTRIES)
        ptrs: list[bytes] = []
        for slot in range(LIST_ENTRIES):
            if len(ptrs) >= wanted:
                break
            child = table[slot * 16 : slot * 16 + 16]
            ptrs.extend([child] if depth == 1 else self._list_ptrs(child, depth - 1, wanted - len(ptrs)))
        return ptrs

    def _contents(self, node: _NodeData, path: str) -> bytes:
        record_size = BLOCK_SIZE << node.record_level
        count = -(-node.size // record_size)
        pieces = []
        for ptr in self._record_ptrs(node, count):
            raw = self._block(ptr, f"data of {path}") or b""
            pieces.append(raw[:record_size] + bytes(record_size - min(len(raw), record_size)))
        return b"".join(pieces)[: node.size]

    def _dir_entries(self, node_id: int, path: str) -> list[tuple[str, int]]:
        if node_id not in self._dirs:
            self._dirs[node_id] = self._read_dir(self._node(node_id), path)
        return self._dirs[node_id]

    def _read_dir(self, node: _NodeData, path: str) -> list[tuple[str, int]]:
        found = []
        raw = self._contents(node, path)
        for node_id, name in _DIR_ENTRY.iter_unpack(raw[: len(raw) - len(raw) % 256]):
            if node_id:
                found.append((name.split(b"\0", 1)[0].decode(errors="replace"), node_id))
        return sorted(found)

    def _lookup(self, path: str) -> int:
        node_id = 1
        for name in [part for part in path.split("/") if part]:
            children = dict(self._dir_entries(node_id, path))
            if name not in children:
                raise UsageError(f"{self.name}:{path}: no such file in the image")
            node_id = children[name]
        return node_id

    def _free_blocks(self) -> set[int]:
        """Replay the allocation log oldest first: positive counts free blocks, negative ones take them back."""
        lists = []
        ptr = self.header.alloc
        while True:
            raw = self._block(ptr, "the allocation log")
            if raw is None:
                break
            lists.append(raw)
            ptr = raw[:16]
        free: set[int] = set()
        for raw in reversed(lists):
            for index, count in _ALLOC_ENTRY.iter_unpack(raw[16:]):
                blocks = range(index, index + abs(count))
                if count > 0:
                    free.update(blocks)
                else:
                    free.difference_update(blocks)
        return free
