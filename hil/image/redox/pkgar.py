"""Redox packages (.pkgar): reading and checking them, plus a small writer for tests and benchmarks.

Layout (little endian, packed), as in the pkgar-core crate:
- header, 136 bytes: ed25519 signature (64), public key (32), blake3 of the entry table (32), entry count (u32)
  and data flags (u32; the two were one u64 count before compressed packages existed, so old files read the
  same). The signature covers the 72 header bytes after it (NaCl `crypto_sign` = signature + message).
- entry table, 308 bytes an entry: blake3 of the file's data (32), offset (u64), size (u64), mode (u32),
  path (256, NUL padded, relative).
- data: each entry's bytes at header + table + offset. Symlinks store their target as data. With the LZMA2
  packaging flag, an entry's data is a u64 unpacked size then a raw LZMA2 stream, and blake3 covers the
  unpacked bytes.
"""

from __future__ import annotations

import lzma
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hil.errors import InfraError, UsageError

HEADER_SIZE = 136
ENTRY_SIZE = 308
PATH_SIZE = 256
SIGNATURE_SIZE = 64
MODE_KIND = 0o170000
MODE_PERM = 0o007777
MODE_FILE = 0o100000
MODE_SYMLINK = 0o120000
PACKAGING_NONE = 0
PACKAGING_LZMA2 = 1
# pkgar's LZMA2 writer and reader agree on this dictionary size (lzma-rust2's default << 3)
LZMA2_DICT_SIZE = (8 << 20) << 3

_HEADER = struct.Struct("<64s32s32sII")
_ENTRY = struct.Struct("<32sQQI256s")


class PkgarError(InfraError):
    """A package file is truncated, corrupt, badly signed or unsafe to extract."""


@dataclass(frozen=True)
class PkgarEntry:
    """One file or symlink in a package; `path` is relative, without a leading slash."""

    path: str
    mode: int
    size: int
    offset: int
    blake3: bytes

    @property
    def is_symlink(self) -> bool:
        return self.mode & MODE_KIND == MODE_SYMLINK


@dataclass(frozen=True)
class PkgarHeader:
    signature: bytes
    public_key: bytes
    entries_blake3: bytes
    count: int
    flags: int

    @property
    def packaging(self) -> int:
        return (self.flags >> 16) & 0xFF

    @property
    def data_version(self) -> int:
        return self.flags & 0xFF


class Package:
    """A checked package held in memory: header, signature and entry table are verified on opening,
    each file's blake3 when it is read."""

    def __init__(self, data: bytes, source: str, public_key: bytes | None = None) -> None:
        self.source = source
        self._data = data
        self.header = self._parse_header()
        self._check_signature(public_key)  # first: a damaged header is best reported as what it is
        self._check_header()
        self.entries = self._parse_entries()
        self._data_start = HEADER_SIZE + self.header.count * ENTRY_SIZE

    @property
    def public_key(self) -> bytes:
        return self.header.public_key

    def read(self, entry: PkgarEntry) -> bytes:
        """The entry's bytes (unpacked), after checking their blake3 against the entry table."""
        start = self._data_start + entry.offset
        raw = self._data[start : start + entry.size]
        if len(raw) != entry.size:
            raise self._error(f"truncated: the data of {entry.path!r} ends at byte {len(self._data)}")
        data = self._unpack(entry, raw)
        if blake3.blake3(data).digest() != entry.blake3:
            raise self._error(f"bad blake3 for {entry.path!r}: its data does not match the entry table")
        return data

    def files(self) -> Iterator[tuple[PkgarEntry, bytes]]:
        for entry in self.entries:
            yield entry, self.read(entry)

    def _error(self, what: str) -> PkgarError:
        return PkgarError(f"{self.source}: {what}")

    def _parse_header(self) -> PkgarHeader:
        if len(self._data) < HEADER_SIZE:
            raise self._error(f"truncated: {len(self._data)} bytes, a pkgar header alone is {HEADER_SIZE}")
        return PkgarHeader(*_HEADER.unpack_from(self._data))

    def _check_header(self) -> None:
        header = self.header
        if header.data_version != 0 or header.packaging not in (PACKAGING_NONE, PACKAGING_LZMA2):
            raise self._error(f"unsupported pkgar data flags {header.flags:#x}; hil reads format 0, plain or LZMA2")
        table_end = HEADER_SIZE + header.count * ENTRY_SIZE
        if table_end > len(self._data):
            raise self._error(f"truncated: the header lists {header.count} entries but the file ends inside them")

    def _check_signature(self, expected_key: bytes | None) -> None:
        if expected_key is not None and expected_key != self.header.public_key:
            raise self._error(
                f"signed with key {self.header.public_key.hex()}, expected {expected_key.hex()}; "
                "check --public-key or where the package came from"
            )
        try:
            Ed25519PublicKey.from_public_bytes(self.header.public_key).verify(
                self.header.signature, self._data[SIGNATURE_SIZE:HEADER_SIZE]
            )
        except (InvalidSignature, ValueError):
            raise self._error("bad signature: the header is not signed by the key it names") from None

    def _parse_entries(self) -> list[PkgarEntry]:
        table = self._data[HEADER_SIZE : HEADER_SIZE + self.header.count * ENTRY_SIZE]
        if blake3.blake3(table).digest() != self.header.entries_blake3:
            raise self._error("bad blake3 of the entry table: the package is corrupt")
        data_size = len(self._data) - HEADER_SIZE - len(table)
        entries = [self._parse_entry(fields, data_size) for fields in _ENTRY.iter_unpack(table)]
        return entries

    def _parse_entry(self, fields: tuple, data_size: int) -> PkgarEntry:
        digest, offset, size, mode, raw_path = fields
        path = self._check_path(raw_path.split(b"\0", 1)[0])
        if mode & ~(MODE_KIND | MODE_PERM) or mode & MODE_KIND not in (MODE_FILE, MODE_SYMLINK):
            raise self._error(f"entry {path!r} has mode {mode:#o}, neither a file nor a symlink")
        if offset + size > data_size:
            raise self._error(f"truncated: the data of {path!r} would end past the end of the file")
        return PkgarEntry(path=path, mode=mode, size=size, offset=offset, blake3=digest)

    def _check_path(self, raw: bytes) -> str:
        try:
            path = raw.decode()
        except UnicodeDecodeError:
            raise self._error(f"entry path {raw!r} is not UTF-8") from None
        parts = path.split("/")
        if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise self._error(f"entry path {path!r} escapes the package root or is not a plain relative path")
        return path

    def _unpack(self, entry: PkgarEntry, raw: bytes) -> bytes:
        if self.header.packaging == PACKAGING_NONE:
            return raw
        if len(raw) < 8:
            raise self._error(f"truncated: compressed data of {entry.path!r} lacks its size")
        (unpacked_size,) = struct.unpack_from("<Q", raw)
        decompressor = lzma.LZMADecompressor(
            lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": LZMA2_DICT_SIZE}]
        )
        try:
            data = decompressor.decompress(raw[8:])
        except lzma.LZMAError as error:
            raise self._error(f"bad LZMA2 data for {entry.path!r}: {error}") from None
        if len(data) != unpacked_size:
            raise self._error(f"{entry.path!r} unpacks to {len(data)} bytes, the package says {unpacked_size}")
        return data


def read_package(path: Path, public_key: bytes | None = None) -> Package:
    """Open and check a .pkgar file; `public_key` (32 raw bytes) pins who must have signed it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such package file") from None
    except OSError as error:
        raise InfraError(f"{path}: cannot read: {error.strerror}") from None
    return Package(data, str(path), public_key)


def load_public_key(value: str | bytes | Path) -> bytes:
    """A public key from 32 raw bytes, 64 hex digits, or a file: pkgar's `id_ed25519.pub.toml` (`pkey = "..."`),
    a bare hex line, or 32 raw bytes."""
    if isinstance(value, bytes):
        return _key_bytes(value, "the given public key")
    text = str(value).strip()
    if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
        return bytes.fromhex(text)
    path = Path(text)
    if not path.is_file():
        raise UsageError(f"public key {text!r} is neither 64 hex digits nor an existing file")
    raw = path.read_bytes()
    if len(raw) == 32:
        return raw
    return _key_from_text(raw.decode(errors="replace"), path)


def _key_from_text(text: str, path: Path) -> bytes:
    import tomllib

    try:
        hex_key = tomllib.loads(text).get("pkey", "")
    except tomllib.TOMLDecodeError:
        hex_key = text.strip()
    try:
        return _key_bytes(bytes.fromhex(str(hex_key)), str(path))
    except ValueError:
        raise UsageError(f'{path}: no public key found; expected `pkey = "<64 hex digits>"`') from None


def _key_bytes(raw: bytes, what: str) -> bytes:
    if len(raw) != 32:
        raise UsageError(f"{what}: an ed25519 public key is 32 bytes, got {len(raw)}")
    return raw


# --- writer (tests and benchmarks make their own packages with it) -------------------------------------------


@dataclass(frozen=True)
class PackageFile:
    """A file or symlink to put in a package written by `build_package`."""

    path: str
    data: bytes
    mode: int = MODE_FILE | 0o644

    @classmethod
    def symlink(cls, path: str, target: str) -> PackageFile:
        return cls(path, target.encode(), MODE_SYMLINK | 0o777)


def build_package(files: Iterable[PackageFile], key: Ed25519PrivateKey, compress: bool = False) -> bytes:
    """A signed .pkgar holding `files` (sorted by path, as pkgar does), plain or LZMA2-packed."""
    table, blobs, offset = bytearray(), [], 0
    for item in sorted(files, key=lambda f: f.path):
        blob = _pack(item.data) if compress else item.data
        path = item.path.encode()
        if len(path) >= PATH_SIZE:
            raise UsageError(f"{item.path}: a pkgar path holds at most {PATH_SIZE - 1} bytes")
        table += _ENTRY.pack(blake3.blake3(item.data).digest(), offset, len(blob), item.mode, path)
        blobs.append(blob)
        offset += len(blob)
    flags = (PACKAGING_LZMA2 << 16) if compress else 0
    public = key.public_key().public_bytes_raw()
    signed = struct.pack("<32s32sII", public, blake3.blake3(bytes(table)).digest(), len(blobs), flags)
    return key.sign(signed) + signed + bytes(table) + b"".join(blobs)


def _pack(data: bytes) -> bytes:
    # a small dictionary keeps the encoder's memory low; any reader's larger dictionary still decodes it
    compressor = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}])
    return struct.pack("<Q", len(data)) + compressor.compress(data) + compressor.flush()
