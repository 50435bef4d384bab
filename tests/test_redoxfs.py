"""SeaHash reference values and RedoxFS v6: round trips, indirect records, big directories, names, header ring."""

from __future__ import annotations

import io
import os
import struct

import pytest

from hil.errors import InfraError, UsageError
from hil.image.redox import redoxfs, redoxfs_v6, seahash
from hil.image.redox.redoxfs_v6 import BLOCK_SIZE, HEADER_RING, RECORD_SIZE

UUID = bytes(range(16))
MTIME = 1_700_000_000.25


# --- seahash --------------------------------------------------------------------------------------------------


def test_seahash_matches_the_crates_reference_values() -> None:
    # seahash crate, reference.rs `shakespear` test, and redoxfs header.rs `header_hash_test` (4072 zero bytes)
    assert seahash.hash(b"to be or not to be") == 1988685042348123509
    assert seahash.hash(bytes(4072)) == 0xE81FFCB86026FF96


def test_seahash_diffuse_matches_the_crates_vectors() -> None:
    vectors = {0: 0, 1: 15197155197312260123, 2: 1571904453004118546, 0xDEADBEEF: 12110756357096144265}
    for value, expected in vectors.items():
        assert seahash.diffuse(value) == expected


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 31, 32, 33, 4072, 4096, RECORD_SIZE])
def test_hash_many_agrees_with_the_scalar_hash(length: int) -> None:
    buffers = [os.urandom(length) for _ in range(9)]  # enough equal lengths to take the numpy path
    assert seahash.hash_many(buffers) == [seahash.hash(buffer) for buffer in buffers]


def test_hash_many_keeps_the_order_of_mixed_lengths() -> None:
    buffers = [os.urandom(size) for size in (4096, 100, 4096, 8192) * 4]
    assert seahash.hash_many(buffers) == [seahash.hash(buffer) for buffer in buffers]


# --- helpers --------------------------------------------------------------------------------------------------


def _write(tree: redoxfs.FsTree, size: int = 64 << 20) -> io.BytesIO:
    image = io.BytesIO()
    redoxfs.new_writer(tree).write(image, 0, size, UUID)
    image.truncate(size)
    return image


def _read(image: io.BytesIO) -> redoxfs_v6.Reader:
    reader = redoxfs.open_image(image, 0, "test.img")
    assert isinstance(reader, redoxfs_v6.Reader)
    return reader


def _sample_tree() -> redoxfs.FsTree:
    tree = redoxfs.new_tree(now=MTIME)
    tree.add_file("/boot/kernel", b"\x7fELF" + os.urandom(300_000), 0o755)
    tree.add_file("/etc/hostname", b"redox\n", 0o644, uid=0, gid=0, mtime=1234.5)
    tree.add_file("/home/user/.profile", b"export A=1\n", 0o600, uid=1000, gid=1000)
    tree.add_file("/empty", b"")
    tree.add_file("/usr/bin/setuid-tool", b"#!", 0o4755)
    tree.mkdir("/tmp", 0o1777)
    tree.symlink("/bin", "usr/bin")
    tree.symlink("/etc/localtime", "/usr/share/zoneinfo/UTC")
    return tree


# --- round trips ----------------------------------------------------------------------------------------------


def test_round_trip_keeps_every_file_mode_owner_time_and_link() -> None:
    tree = _sample_tree()
    reader = _read(_write(tree))
    found = {entry.path: entry for entry in reader.entries()}
    assert set(found) == {path for path, _ in tree.walk()}
    for path, node in tree.walk():
        entry = found[path]
        assert entry.mode == node.mode, path
        assert (entry.uid, entry.gid) == (node.uid, node.gid), path
        assert entry.mtime == node.mtime, path
        if not node.is_dir:
            assert reader.read(path) == node.data, path
            assert entry.size == len(node.data)
    assert found["/bin"].is_symlink and found["/bin"].link_target == "usr/bin"
    assert found["/tmp"].mode == redoxfs.MODE_DIR | 0o1777
    assert found["/usr/bin/setuid-tool"].mode == redoxfs.MODE_FILE | 0o4755
    assert found["/etc/hostname"].mtime == (1234, 500_000_000)


def test_check_finds_allocation_log_and_used_blocks_disjoint() -> None:
    image = _write(_sample_tree(), size=32 << 20)
    counts = _read(image).check()
    assert counts["blocks"] == (32 << 20) // BLOCK_SIZE
    # everything but the header ring and the spare block is either used or free, never both
    assert counts["used_blocks"] + counts["free_blocks"] == counts["blocks"] - redoxfs_v6.FIRST_FREE_BLOCK


def test_records_are_stored_at_the_smallest_level_and_zero_records_stay_null() -> None:
    tree = redoxfs.new_tree(now=MTIME)
    data = os.urandom(5000) + bytes(RECORD_SIZE * 3) + os.urandom(10)
    tree.add_file("/mixed", data)
    reader = _read(_write(tree))
    assert reader.read("/mixed") == data
    node = reader._node(reader._lookup("/mixed"))
    pointers = [struct.unpack_from("<Q", node.raw, 64 + 16 * i)[0] for i in range(4)]
    # record 0 is a whole 128 KiB record (level 5); 1 and 2 are all zero, so never written (null);
    # record 3 holds the last 5010 bytes, stored at level 1 (8 KiB)
    assert [address & 0xF for address in pointers] == [5, 0, 0, 1]
    assert pointers[1] == pointers[2] == 0
    assert pointers[0] >> 4 and pointers[3] >> 4


def test_a_file_past_128_records_uses_indirect_lists() -> None:
    size = RECORD_SIZE * (redoxfs_v6.DIRECT_RECORDS + 300)
    data = bytearray(size)  # sparse, so the test stays fast: data only in a few records
    for offset in (0, RECORD_SIZE * 127, RECORD_SIZE * 128 + 17, RECORD_SIZE * 400, size - 5):
        data[offset : offset + 5] = b"HELLO"
    tree = redoxfs.new_tree(now=MTIME)
    tree.add_file("/big", bytes(data))
    reader = _read(_write(tree))
    assert reader.read("/big") == data
    node = reader._node(reader._lookup("/big"))
    level1 = node.raw[64 + 128 * 16 :]
    assert struct.unpack_from("<Q", level1, 0)[0] >> 4, "level1[0] points at a list"
    assert struct.unpack_from("<Q", level1, 16)[0] >> 4, "level1[1] covers records 384.."
    assert reader.check()["files"] == 1


def test_records_map_onto_node_levels_as_redoxfs_numbers_them() -> None:
    layout = redoxfs_v6._NodeLayout(redoxfs.FsNode(redoxfs.MODE_FILE), 2, 5, 0)
    cases = {
        127: ("direct", 127),
        128: (1, (0, 0)),
        128 + 255: (1, (0, 255)),
        128 + 256: (1, (1, 0)),
        128 + 64 * 256: (2, (0, 0, 0)),
        128 + 64 * 256 + 65536 + 257: (2, (1, 1, 1)),
    }
    for index, (depth, slots) in cases.items():
        record = redoxfs_v6._Block(0)
        redoxfs_v6._attach(layout, index, record, "/f")
        if depth == "direct":
            assert layout.direct[slots] is record
            continue
        table = layout.indirect[depth - 1][slots[0]]
        for slot in slots[1:-1]:
            table = table.children[slot]
        assert table.children[slots[-1]] is record, index


def test_a_directory_with_many_entries_spans_several_blocks() -> None:
    tree = redoxfs.new_tree(now=MTIME)
    names = [f"entry-{i:04d}-" + "x" * (i % 200) for i in range(300)]
    for name in names:
        tree.add_file(f"/many/{name}", name.encode())
    reader = _read(_write(tree))
    entries = {entry.path: entry for entry in reader.entries()}
    assert entries["/many"].size == -(-300 // 16) * BLOCK_SIZE  # 16 entries of 256 bytes a block
    for name in names:
        assert reader.read(f"/many/{name}") == name.encode()


def test_names_up_to_252_bytes_work_and_longer_ones_are_refused_with_the_path() -> None:
    tree = redoxfs.new_tree(now=MTIME)
    longest = "n" * redoxfs_v6.MAX_NAME
    tree.add_file(f"/dir/{longest}", b"ok")
    assert _read(_write(tree)).read(f"/dir/{longest}") == b"ok"
    with pytest.raises(UsageError, match=r"/dir/n+.*253 bytes, RedoxFS allows 252"):
        tree.add_file("/dir/" + "n" * 253, b"")
    with pytest.raises(UsageError, match="cannot contain ':'"):
        tree.add_file("/dir/a:b", b"")
    with pytest.raises(UsageError, match="absolute"):
        tree.add_file("relative/path", b"")


def test_a_file_cannot_replace_a_directory_nor_sit_under_a_file() -> None:
    tree = redoxfs.new_tree(now=MTIME)
    tree.add_file("/etc/passwd", b"root")
    with pytest.raises(UsageError, match="/etc: is a directory"):
        tree.add_file("/etc", b"")
    with pytest.raises(UsageError, match="/etc/passwd is a file"):
        tree.add_file("/etc/passwd/x", b"")
    tree.add_file("/etc/passwd", b"replaced")
    assert tree.get("/etc/passwd").data == b"replaced"


def test_too_many_files_for_the_size_is_a_usage_error() -> None:
    tree = redoxfs.new_tree(now=MTIME)
    tree.add_file("/big", os.urandom(3 << 20))
    with pytest.raises(UsageError, match="do not fit"):
        redoxfs.new_writer(tree).write(io.BytesIO(), 0, 2 << 20, UUID)


# --- header and ring ------------------------------------------------------------------------------------------


def test_header_fields_and_checksum() -> None:
    image = _write(_sample_tree(), size=16 << 20)
    header = image.getvalue()[:BLOCK_SIZE]
    signature, version, uuid, size, generation = struct.unpack_from("<8sQ16sQQ", header)
    assert (signature, version, uuid, size, generation) == (b"RedoxFS\0", 6, UUID, 16 << 20, 0)
    digest = seahash.hash(header[:4072])
    assert struct.unpack_from("<Q", header, 4088)[0] == digest
    assert header[4072:4088] == digest.to_bytes(8, "little") + bytes(8)  # unencrypted: plain hash, zero padded
    assert not any(header[80:4072])  # key slots and padding stay zero
    assert not any(image.getvalue()[BLOCK_SIZE : HEADER_RING * BLOCK_SIZE])  # no stale header in the ring


def test_the_newest_valid_header_in_the_ring_wins() -> None:
    tree = _sample_tree()
    image = _write(tree)
    reader = _read(image)
    newer = redoxfs_v6.build_header(b"N" * 16, 64 << 20, 5, reader.header.tree, reader.header.alloc)
    image.seek(5 * BLOCK_SIZE)
    image.write(newer)
    broken = bytearray(redoxfs_v6.build_header(b"B" * 16, 64 << 20, 9, reader.header.tree, reader.header.alloc))
    broken[100] ^= 1  # a newer header with a bad checksum must be ignored
    image.seek(9 * BLOCK_SIZE)
    image.write(broken)
    reread = _read(image)
    assert (reread.header.generation, reread.header.slot, reread.header.uuid) == (5, 5, b"N" * 16)
    assert reread.read("/etc/hostname") == b"redox\n"


def test_a_corrupt_header_or_block_is_reported() -> None:
    image = _write(_sample_tree())
    raw = bytearray(image.getvalue())
    raw[200] ^= 0xFF
    with pytest.raises(InfraError, match="no valid RedoxFS v6 header"):
        _read(io.BytesIO(bytes(raw)))
    image = _write(_sample_tree())
    reader = _read(image)
    kernel = reader._node(reader._lookup("/boot/kernel"))
    index = struct.unpack_from("<Q", kernel.raw, 64)[0] >> 4
    image.seek(index * BLOCK_SIZE + 10)
    image.write(b"\xff")
    with pytest.raises(InfraError, match=f"bad seahash of block {index}"):
        _read(image).read("/boot/kernel")


def test_other_versions_are_refused_clearly() -> None:
    image = _write(_sample_tree())
    image.seek(8)
    image.write(struct.pack("<Q", 7))
    with pytest.raises(UsageError, match="RedoxFS version 7 is not supported"):
        redoxfs.open_image(image, 0, "v7.img")
