"""pkgar: round trips with the test writer, every corruption case, signatures, keys, and package repositories."""

from __future__ import annotations

import functools
import http.server
import re
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hil.errors import InfraError, UsageError
from hil.image.redox import pkgar
from hil.image.redox.pkgar import (
    ENTRY_SIZE,
    HEADER_SIZE,
    MODE_FILE,
    MODE_SYMLINK,
    Package,
    PackageFile,
    PkgarError,
    build_package,
    load_public_key,
)
from hil.image.redox.repo import PackageRepo
from hil.image.redox.synthetic import write_repo

KEY = Ed25519PrivateKey.generate()
PUBLIC = KEY.public_key().public_bytes_raw()
FILES = [
    PackageFile("usr/bin/tool", b"\x7fELF tool", MODE_FILE | 0o755),
    PackageFile("etc/tool.conf", b"verbose = 1\n"),
    PackageFile("usr/lib/libtool.so.1", b"library"),
    PackageFile.symlink("usr/lib/libtool.so", "libtool.so.1"),
    PackageFile("empty", b""),
]


def _package(files: list[PackageFile] = FILES, compress: bool = False) -> bytes:
    return build_package(files, KEY, compress=compress)


def _resign(data: bytearray) -> bytes:
    """Sign a modified header again, so only the damage under test remains."""
    data[:64] = KEY.sign(bytes(data[64:HEADER_SIZE]))
    return bytes(data)


# --- reading --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_gives_back_every_file_mode_and_link(compress: bool) -> None:
    package = Package(_package(compress=compress), "tool.pkgar", PUBLIC)
    assert package.public_key == PUBLIC
    got = {entry.path: (entry.mode, data) for entry, data in package.files()}
    assert got == {item.path: (item.mode, item.data) for item in FILES}
    assert [entry.path for entry in package.entries] == sorted(item.path for item in FILES)
    link = next(entry for entry in package.entries if entry.is_symlink)
    assert link.mode == MODE_SYMLINK | 0o777 and package.read(link) == b"libtool.so.1"


def test_layout_is_the_documented_one() -> None:
    data = _package()
    signature, public, table_hash, count, flags = struct.unpack_from("<64s32s32sII", data)
    assert (public, count, flags) == (PUBLIC, len(FILES), 0)
    table = data[HEADER_SIZE : HEADER_SIZE + count * ENTRY_SIZE]
    assert blake3.blake3(table).digest() == table_hash
    _, offset, size, mode, path = struct.unpack_from("<32sQQI256s", table)
    assert path.rstrip(b"\0") == b"empty" and (offset, size, mode) == (0, 0, MODE_FILE | 0o644)
    KEY.public_key().verify(signature, data[64:HEADER_SIZE])  # ed25519 over the 72 bytes after the signature


def test_a_package_signed_by_another_key_is_refused_when_a_key_is_pinned() -> None:
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    with pytest.raises(PkgarError, match=f"tool.pkgar: signed with key {PUBLIC.hex()}, expected {other.hex()}"):
        Package(_package(), "tool.pkgar", other)


def test_a_bad_signature_is_refused() -> None:
    data = bytearray(_package())
    data[5] ^= 1
    with pytest.raises(PkgarError, match="bad signature"):
        Package(bytes(data), "tool.pkgar")


def test_a_changed_header_breaks_the_signature() -> None:
    data = bytearray(_package())
    data[HEADER_SIZE - 8] += 1  # entry count
    with pytest.raises(PkgarError, match="bad signature"):
        Package(bytes(data), "tool.pkgar")


def test_a_changed_entry_table_is_refused() -> None:
    data = bytearray(_package())
    data[HEADER_SIZE + 60] ^= 1  # a path byte of the first entry
    with pytest.raises(PkgarError, match="bad blake3 of the entry table"):
        Package(bytes(data), "tool.pkgar")


def test_changed_file_data_is_refused_when_read() -> None:
    data = bytearray(_package())
    data[-3] ^= 1  # inside the last file's data
    package = Package(bytes(data), "tool.pkgar", PUBLIC)
    with pytest.raises(PkgarError, match=re.escape("tool.pkgar: bad blake3 for 'usr/lib/libtool.so.1'")):
        dict(package.files())


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        (100, "truncated: 100 bytes, a pkgar header alone is 136"),
        (HEADER_SIZE + ENTRY_SIZE, "truncated: the header lists 5 entries"),
        (-2, "truncated: the data of 'usr/lib/libtool.so.1' would end past the end of the file"),
    ],
)
def test_truncated_files_are_refused(keep: int, message: str) -> None:
    data = _package()
    with pytest.raises(PkgarError, match=message):
        Package(data[:keep], "tool.pkgar")


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "usr/../../x", "a//b", "./a", ""])
def test_paths_escaping_the_root_are_refused(path: str) -> None:
    data = build_package([PackageFile(path, b"x")], KEY)
    with pytest.raises(PkgarError, match="escapes the package root"):
        Package(data, "evil.pkgar")


def test_modes_other_than_file_and_symlink_are_refused() -> None:
    data = build_package([PackageFile("dev/sda", b"", 0o060644)], KEY)
    with pytest.raises(PkgarError, match="mode 0o60644, neither a file nor a symlink"):
        Package(data, "dev.pkgar")


def test_unknown_data_flags_are_refused() -> None:
    data = bytearray(_package())
    struct.pack_into("<I", data, 132, 7 << 16)
    with pytest.raises(PkgarError, match="unsupported pkgar data flags 0x70000"):
        Package(_resign(data), "tool.pkgar")


def test_read_package_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such package file"):
        pkgar.read_package(tmp_path / "nope.pkgar")


# --- public keys ----------------------------------------------------------------------------------------------


def test_public_keys_load_from_hex_toml_raw_and_bytes(tmp_path: Path) -> None:
    toml = tmp_path / "id_ed25519.pub.toml"
    toml.write_text(f'pkey = "{PUBLIC.hex()}"\n')
    raw = tmp_path / "key.bin"
    raw.write_bytes(PUBLIC)
    for value in (PUBLIC.hex(), str(toml), raw, PUBLIC):
        assert load_public_key(value) == PUBLIC
    with pytest.raises(UsageError, match="neither 64 hex digits nor an existing file"):
        load_public_key("nope")
    with pytest.raises(UsageError, match="32 bytes"):
        load_public_key(b"short")


# --- repositories ---------------------------------------------------------------------------------------------


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    packages = {
        "app": [PackageFile("usr/bin/app", b"app")],
        "libfoo": [PackageFile("usr/lib/libfoo.so", b"foo")],
        "libbar": [PackageFile("usr/lib/libbar.so", b"bar")],
        "loop-a": [PackageFile("a", b"a")],
        "loop-b": [PackageFile("b", b"b")],
        "broken": [PackageFile("x", b"x")],
    }
    depends = {"app": ["libfoo", "libbar"], "libfoo": ["libbar"], "loop-a": ["loop-b"], "loop-b": ["loop-a"]}
    depends["broken"] = ["missing"]
    write_repo(folder, packages, depends, key=KEY)
    return folder


def test_repo_resolves_dependencies_first_and_each_once(repo_dir: Path) -> None:
    repo = PackageRepo(repo_dir, public_key=PUBLIC)
    assert repo.resolve(["app"]) == ["libbar", "libfoo", "app"]
    assert repo.resolve(["loop-a"]) == ["loop-b", "loop-a"]
    assert repo.info("app").depends == ("libfoo", "libbar")
    assert "app" in repo.names() and "repo" not in repo.names()


def test_repo_names_a_missing_dependency_and_a_missing_package(repo_dir: Path) -> None:
    repo = PackageRepo(repo_dir)
    with pytest.raises(UsageError, match="package 'broken' depends on 'missing'"):
        repo.resolve(["broken"])
    with pytest.raises(UsageError, match=r"nothere\.toml: no such package metadata"):
        repo.resolve(["nothere"])
    with pytest.raises(UsageError, match="no such folder"):
        PackageRepo(repo_dir / "absent")


def test_repo_checks_the_metadata_blake3(repo_dir: Path) -> None:
    meta = repo_dir / "app.toml"
    meta.write_text(meta.read_text().replace('blake3 = "', 'blake3 = "00'))
    with pytest.raises(UsageError, match=r"differs from 00.*Fix: rebuild or copy the package again"):
        PackageRepo(repo_dir).package("app")  # the user's own file: another try reads the same bytes
    assert PackageRepo(repo_dir).package("libfoo").entries[0].path == "usr/lib/libfoo.so"


@pytest.fixture
def served(repo_dir: Path) -> Iterator[str]:
    """The repo folder over http on 127.0.0.1, for the URL code path."""
    handler = functools.partial(_QuietHandler, directory=str(repo_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_repo_over_http_downloads_with_progress_and_caches(
    served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path / "cache"))
    reports: list[tuple[str, int, int | None]] = []
    repo = PackageRepo(served, public_key=PUBLIC, progress=lambda *report: reports.append(report))
    assert repo.resolve(["app"]) == ["libbar", "libfoo", "app"]
    assert dict(repo.package("app").files())
    assert reports and reports[-1][0] == "app.pkgar" and reports[-1][1] == reports[-1][2]
    cached = list((tmp_path / "cache" / "pkgar").glob("*/app.*.pkgar"))
    assert len(cached) == 1 and str(tmp_path / "cache") in str(repo.cache)

    monkeypatch.setenv("HIL_OFFLINE", "1")  # the cache alone must do now
    offline = PackageRepo(served, public_key=PUBLIC)
    assert offline.package("app").entries[0].path == "usr/bin/app"
    with pytest.raises(InfraError, match=r"HIL_OFFLINE=1 and .*libnone\.toml is not in the cache"):
        offline.info("libnone")


def test_repo_over_http_reports_missing_packages(served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(UsageError, match=r"nothere\.toml: not found"):
        PackageRepo(served).info("nothere")


def test_repo_over_http_reports_an_unreachable_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(InfraError, match=re.escape("download of http://127.0.0.1:9/x.toml failed")):
        PackageRepo("http://127.0.0.1:9").info("x")
