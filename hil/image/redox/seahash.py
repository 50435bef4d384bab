"""SeaHash, the checksum RedoxFS keeps beside every block pointer and in its header.

`hash` is the plain algorithm in pure Python, for a single small buffer (a header). `hash_many` computes the
same function over many buffers at once with numpy: SeaHash is sequential within one buffer, but buffers of
equal length can advance in lock-step, so the cost is one numpy step per 32 bytes of the *longest* length
instead of one Python step per 8 bytes of *all* the data. That keeps an image of a few MiB of files well
under a second.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Sequence

SEED = (0x16F11FE89B0D677C, 0xB480A793D8E6C86C, 0x6FE2E5AAF078EBC9, 0x14F994A4C5259381)
_PRIME = 0x6EED0E9DA4D94A4F
_MASK = (1 << 64) - 1
_MIN_BATCH = 6  # below this many equal-length buffers the scalar loop is faster (measured)


def diffuse(x: int) -> int:
    """The bijective mixing step (a PCG-style round)."""
    x = (x * _PRIME) & _MASK
    x ^= (x >> 32) >> (x >> 60)
    return (x * _PRIME) & _MASK


def hash(data: bytes | bytearray | memoryview) -> int:
    """SeaHash of `data` with the default seed, as the Rust `seahash::hash`."""
    lanes = list(SEED)
    view = memoryview(data).cast("B")
    whole = len(view) - len(view) % 8
    words = list(struct.unpack_from(f"<{whole // 8}Q", view))
    tail = bytes(view[whole:])
    if tail:
        words.append(int.from_bytes(tail, "little"))  # the last partial word, zero-padded
    for index, word in enumerate(words):
        lane = index % 4
        lanes[lane] = diffuse(lanes[lane] ^ word)
    return _finish(lanes, len(view))


def _finish(lanes: Sequence[int], length: int) -> int:
    a, b, c, d = lanes
    return diffuse(a ^ b ^ c ^ d ^ length)


def hash_many(buffers: Sequence[bytes | bytearray | memoryview]) -> list[int]:
    """SeaHash of every buffer, in order; buffers of equal length are hashed together with numpy."""
    results = [0] * len(buffers)
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, buffer in enumerate(buffers):
        by_length[len(buffer)].append(index)
    for length, indexes in by_length.items():
        if length % 32 or len(indexes) < _MIN_BATCH:
            for index in indexes:  # few or odd-sized buffers: numpy's per-step overhead would not pay off
                results[index] = hash(buffers[index])
            continue
        for index, value in zip(indexes, _hash_equal_lengths([buffers[i] for i in indexes], length), strict=True):
            results[index] = value
    return results


def _hash_equal_lengths(buffers: list[bytes | bytearray | memoryview], length: int) -> list[int]:
    """SeaHash of buffers that all have `length` bytes, a multiple of 32 (no partial words)."""
    import numpy as np  # here, not at import: numpy costs 40 ms of every hil start

    joined = b"".join(buffers)
    words = np.frombuffer(joined, dtype="<u8").reshape(len(buffers), length // 32, 4)
    rounds = np.ascontiguousarray(words.transpose(1, 0, 2), dtype=np.uint64)  # round-major: one slab a step
    state = np.tile(np.array(SEED, dtype=np.uint64), (len(buffers), 1))
    prime = np.uint64(_PRIME)
    shift32, shift60 = np.uint64(32), np.uint64(60)
    with np.errstate(over="ignore"):
        for block in rounds:
            state ^= block
            state *= prime
            state ^= (state >> shift32) >> (state >> shift60)
            state *= prime
    return [_finish(lanes, length) for lanes in state.tolist()]
