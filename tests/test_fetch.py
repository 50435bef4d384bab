"""`hil image fetch` against a local image server laid out like static.redox-os.org (no internet needed).

The server serves synthetic images (random bytes and zeros, zstd-compressed) with SHA256SUM files in the
build server's format, honours Range requests, counts every request, and can be told to fail, to cut a
transfer short, to publish a wrong checksum or to ignore Range.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import random
import re
import socket
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import zstandard
from rich.console import Console

from hil.errors import InfraError, UsageError
from hil.image import fetch

MIB = 1 << 20
RELEASE_DIR = "/releases/0.9.0/x86_64/"
RELEASE_NAME = "redox_server_x86_64_2024-09-07_1225_harddrive.img.zst"
OLD_RELEASE_DIR = "/releases/0.8.0/x86_64/"
DAILY_DIR = "/img/x86_64/"
DAILY_STAMPS = ("2025-12-29_200", "2025-12-29_1000", "2026-01-05_7")  # the last is the newest
CUSTOM_DIR = "/custom/"


def synthetic_image(seed: int, size: int = 3 * MIB + 12345) -> bytes:
    """Random data around a run of zeros (so the sparse writer has a hole to leave)."""
    noise = random.Random(seed).randbytes(2 * MIB)  # incompressible: the .zst stays over 1 MiB
    return (noise[:MIB] + bytes(MIB) + noise[MIB:] + bytes(size))[:size]


def sha256sum_line(data: bytes, name: str) -> str:
    return f"{hashlib.sha256(data).hexdigest()} *{name}\n"  # what `sha256sum -b` prints


@dataclass
class ImageServer:
    """The files it serves by URL path, what it was asked, and how it should misbehave."""

    files: dict[str, bytes] = field(default_factory=dict)
    originals: dict[str, bytes] = field(default_factory=dict)  # decompressed content by image path
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    fail_status: int | None = None
    truncate_after: int | None = None  # one transfer sends this many body bytes, then hangs up
    ignore_range: bool = False
    wrong_checksum: bool = False
    url: str = ""

    def image_requests(self) -> list[tuple[str, str | None]]:
        return [request for request in self.requests if not request[0].endswith("SHA256SUM")]

    def add_folder(self, folder: str, images: dict[str, bytes], compress: bool = True, list_image: bool = False):
        """Put images (compressed unless told not to) and their SHA256SUM into `folder`."""
        sums = ""
        for name, data in images.items():
            served = zstandard.ZstdCompressor(level=3).compress(data) if compress else data
            path_name = name + (".zst" if compress else "")
            self.files[folder + path_name] = served
            self.originals[folder + path_name] = data
            sums += sha256sum_line(data, name) if list_image else sha256sum_line(served, path_name)
        self.files[folder + "SHA256SUM"] = sums.encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep pytest's output clean
        pass

    def do_GET(self) -> None:
        state = self.server.state
        state.requests.append((self.path, self.headers.get("Range")))
        body = state.files.get(self.path)
        is_checksum = self.path.endswith("SHA256SUM")
        if body is None:
            self.send_error(404)
        elif state.fail_status and not is_checksum:
            self.send_error(state.fail_status)
        elif is_checksum and state.wrong_checksum:
            self._send(200, re.sub(rb"^[0-9a-f]{4}", b"0000", body, flags=re.MULTILINE))
        else:
            self._send_ranged(body)

    def _send_ranged(self, body: bytes) -> None:
        state = self.server.state
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not state.ignore_range:
            start = int(match[1])
            if start >= len(body):
                self.send_error(416)
                return
            self._send(206, body[start:], {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
        else:
            self._send(200, body)

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        state = self.server.state
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if state.truncate_after is not None and not self.path.endswith("SHA256SUM"):
            body, state.truncate_after = body[: state.truncate_after], None
            self.close_connection = True
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ImageServer


@functools.cache
def _corpus() -> ImageServer:
    """The served folders, built once per test process (compressing them is the slow part)."""
    corpus = ImageServer()
    corpus.add_folder(RELEASE_DIR, {RELEASE_NAME.removesuffix(".zst"): synthetic_image(1)})
    daily = {f"redox_{variant}_x86_64_{stamp}_harddrive.img": synthetic_image(10 * n + i)
             for n, variant in enumerate(("server", "demo")) for i, stamp in enumerate(DAILY_STAMPS)}  # fmt: skip
    corpus.add_folder(DAILY_DIR, daily)
    old = {f"redox_{variant}_x86_64_2022-11-23_638_harddrive.img": synthetic_image(50 + n)
           for n, variant in enumerate(("server", "demo"))}  # fmt: skip
    corpus.add_folder(OLD_RELEASE_DIR, old, compress=False)
    corpus.add_folder(CUSTOM_DIR, {"custom_harddrive.img": synthetic_image(90)}, list_image=True)
    return corpus


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ImageServer]:
    """A fresh image server on a free port, with hil's cache in tmp_path pointed at it."""
    corpus = _corpus()
    state = ImageServer(files=dict(corpus.files), originals=corpus.originals)
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = state
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("HIL_IMAGE_SERVER", state.url)
    monkeypatch.setenv("HIL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HIL_OFFLINE", raising=False)
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def partials() -> list[Path]:
    return sorted((fetch.images_dir() / "partial").glob("*.partial"))


def test_release_is_verified_decompressed_cached_read_only_and_found_again_without_the_network(
    server: ImageServer,
) -> None:
    image = fetch.fetch_image("0.9.0", False, "server", console=quiet())

    assert image.path.read_bytes() == server.originals[RELEASE_DIR + RELEASE_NAME]
    assert stat.S_IMODE(image.path.stat().st_mode) == 0o444
    assert image.path.name == RELEASE_NAME.removesuffix(".zst")
    assert image.path.parent == fetch.images_dir() / image.sha256
    assert image.sha256 == hashlib.sha256(server.files[RELEASE_DIR + RELEASE_NAME]).hexdigest()
    assert image.image_sha256 == hashlib.sha256(image.path.read_bytes()).hexdigest()
    assert (image.release, image.variant, image.cached) == ("0.9.0", "server", False)
    assert image.url == server.url + RELEASE_DIR + RELEASE_NAME
    assert [path for path, _ in server.requests] == [RELEASE_DIR + "SHA256SUM", RELEASE_DIR + RELEASE_NAME]
    assert partials() == []

    before = len(server.requests)
    again = fetch.fetch_image("0.9.0", False, "server", console=quiet())
    assert again.cached and again.path == image.path
    assert len(server.requests) == before, "a cached image must not touch the network"


def test_wrong_checksum_deletes_the_download_and_names_both_digests(server: ImageServer) -> None:
    server.wrong_checksum = True
    actual = hashlib.sha256(server.files[RELEASE_DIR + RELEASE_NAME]).hexdigest()

    with pytest.raises(InfraError, match="checksum mismatch") as caught:
        fetch.fetch_image("0.9.0", False, "server", console=quiet())

    message = str(caught.value)
    assert f"got {actual}" in message and "expected 0000" in message and RELEASE_NAME in message
    assert partials() == []
    assert not list(fetch.images_dir().glob("*/meta.json"))


def test_truncated_transfer_keeps_the_partial_and_the_next_run_resumes_with_range(server: ImageServer) -> None:
    server.truncate_after = MIB
    total = len(server.files[RELEASE_DIR + RELEASE_NAME])

    with pytest.raises(InfraError, match=rf"stopped after {MIB} of {total} bytes.*run the same command again"):
        fetch.fetch_image("0.9.0", False, "server", console=quiet())
    [partial] = partials()
    assert partial.stat().st_size == MIB

    image = fetch.fetch_image("0.9.0", False, "server", console=quiet())

    assert server.image_requests()[-1] == (RELEASE_DIR + RELEASE_NAME, f"bytes={MIB}-")
    assert image.path.read_bytes() == server.originals[RELEASE_DIR + RELEASE_NAME]
    assert partials() == []


def test_a_server_ignoring_range_makes_the_download_start_over(server: ImageServer) -> None:
    server.truncate_after = MIB
    with pytest.raises(InfraError, match="stopped after"):
        fetch.fetch_image("0.9.0", False, "server", console=quiet())
    server.ignore_range = True

    image = fetch.fetch_image("0.9.0", False, "server", console=quiet())

    assert server.image_requests()[-1][1] == f"bytes={MIB}-"  # asked for the rest, got everything
    assert image.path.read_bytes() == server.originals[RELEASE_DIR + RELEASE_NAME]


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_name_the_url_and_the_status(server: ImageServer, status: int) -> None:
    server.fail_status = status
    with pytest.raises(InfraError, match=rf"GET {re.escape(server.url + RELEASE_DIR + RELEASE_NAME)} .*HTTP {status}"):
        fetch.fetch_image("0.9.0", False, "server", console=quiet())


def test_a_missing_checksum_file_is_a_404_naming_it(server: ImageServer) -> None:
    del server.files[RELEASE_DIR + "SHA256SUM"]
    with pytest.raises(InfraError, match=rf"{re.escape(RELEASE_DIR)}SHA256SUM failed: HTTP 404"):
        fetch.fetch_image("0.9.0", False, "server", console=quiet())


def test_offline_without_a_cached_image_says_which_variable_forbids_it(
    server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIL_OFFLINE", "1")
    with pytest.raises(InfraError, match=r"HIL_OFFLINE=1 forbids downloads.*release 0\.9\.0 server"):
        fetch.fetch_image("0.9.0", False, "server", console=quiet())
    assert server.requests == []


def test_offline_returns_the_cached_image(server: ImageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    first = fetch.fetch_image("0.9.0", False, "server", console=quiet())
    daily = fetch.fetch_image(None, True, "server", console=quiet())
    before = len(server.requests)
    monkeypatch.setenv("HIL_OFFLINE", "1")

    assert fetch.fetch_image("0.9.0", False, "server", console=quiet()).path == first.path
    assert fetch.fetch_image(None, True, "server", console=quiet()).path == daily.path
    assert len(server.requests) == before
    assert [image.path for image in fetch.list_cached()] == [daily.path, first.path]


def test_daily_picks_the_newest_build_of_the_variant(server: ImageServer) -> None:
    image = fetch.fetch_image(None, True, "server", console=quiet())

    newest = f"redox_server_x86_64_{DAILY_STAMPS[-1]}_harddrive.img.zst"
    assert image.url == server.url + DAILY_DIR + newest
    assert image.path.read_bytes() == server.originals[DAILY_DIR + newest]
    assert (image.release, image.variant) == (None, "server")

    again = fetch.fetch_image(None, True, "server", console=quiet())
    assert again.cached and again.path == image.path
    assert server.image_requests() == [(DAILY_DIR + newest, None)], "the daily image itself is downloaded once"


def test_newest_match_compares_stamps_as_numbers() -> None:
    pattern = fetch.load_catalog().pattern("demo")
    sums = {f"redox_demo_x86_64_{stamp}_harddrive.img.zst": "0" * 64 for stamp in ("2025-12-29_200", "2025-12-29_1000")}
    sums["redox_server_x86_64_2030-01-01_1_harddrive.img.zst"] = "0" * 64
    sums["redox_demo_x86_64_2025-12-29_1000_livedisk.iso.zst"] = "0" * 64
    assert fetch.newest_match(sums, pattern) == "redox_demo_x86_64_2025-12-29_1000_harddrive.img.zst"


def test_unknown_variant_and_release_list_the_known_ones(server: ImageServer) -> None:
    with pytest.raises(UsageError, match="unknown variant 'kiosk'; known variants: server, desktop, demo"):
        fetch.fetch_image("0.9.0", False, "kiosk", console=quiet())
    with pytest.raises(UsageError, match=r"unknown release '0\.1'; known releases: 0\.9\.0, 0\.8\.0"):
        fetch.fetch_image("0.1", False, "server", console=quiet())
    with pytest.raises(UsageError, match="one of --release and --daily"):
        fetch.fetch_image("0.9.0", True, "server", console=quiet())
    assert server.requests == []


def test_uncompressed_release_images_are_verified_and_cached_as_they_are(server: ImageServer) -> None:
    image = fetch.fetch_image("0.8.0", False, "server", console=quiet())
    name = "redox_server_x86_64_2022-11-23_638_harddrive.img"
    assert image.path.read_bytes() == server.originals[OLD_RELEASE_DIR + name]
    assert image.sha256 == image.image_sha256


def test_a_pinned_catalog_digest_needs_no_checksum_file_and_must_match(server: ImageServer) -> None:
    pinned = fetch.load_catalog().releases["0.8.0"].pinned["demo"]
    with pytest.raises(InfraError, match=f"expected {pinned} \\(--sha256\\)"):
        fetch.fetch_image("0.8.0", False, "demo", console=quiet())
    assert [path for path, _ in server.requests] == [OLD_RELEASE_DIR + "redox_demo_x86_64_2022-11-23_638_harddrive.img"]


def test_url_whose_checksum_file_lists_the_decompressed_image(server: ImageServer) -> None:
    url = f"{server.url}{CUSTOM_DIR}custom_harddrive.img.zst"
    image = fetch.fetch_image(None, False, None, url=url, console=quiet())

    assert image.path.read_bytes() == server.originals[CUSTOM_DIR + "custom_harddrive.img.zst"]
    assert image.sha256 == image.image_sha256  # SHA256SUM listed the .img, so that is what was checked
    before = len(server.requests)
    assert fetch.fetch_image(None, False, None, url=url, console=quiet()).cached
    assert len(server.requests) == before


def test_url_with_a_wrong_decompressed_digest_fails_after_decompression(server: ImageServer) -> None:
    server.wrong_checksum = True
    url = f"{server.url}{CUSTOM_DIR}custom_harddrive.img.zst"
    with pytest.raises(InfraError, match=r"checksum mismatch for custom_harddrive\.img "):
        fetch.fetch_image(None, False, None, url=url, console=quiet())
    assert partials() == []
    assert not [p for p in fetch.images_dir().rglob("*") if p.is_file() and p.name.endswith(".img")]


def test_url_with_sha256_skips_the_checksum_file(server: ImageServer) -> None:
    digest = hashlib.sha256(server.files[RELEASE_DIR + RELEASE_NAME]).hexdigest()
    image = fetch.fetch_image(None, False, None, url=server.url + RELEASE_DIR + RELEASE_NAME, sha256=digest,
                              console=quiet())  # fmt: skip
    assert image.sha256 == digest
    assert [path for path, _ in server.requests] == [RELEASE_DIR + RELEASE_NAME]


def test_an_unreachable_server_is_an_infra_error(server: ImageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("HIL_IMAGE_SERVER", f"http://127.0.0.1:{closed_port}")
    with pytest.raises(InfraError, match=r"cannot reach .*HIL_IMAGE_SERVER"):
        fetch.fetch_image("0.9.0", False, "server", console=quiet())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{'a' * 64} *redox_x.img.zst\n", {"redox_x.img.zst": "a" * 64}),
        (f"{'B' * 64}  ./redox_y.img\n", {"redox_y.img": "b" * 64}),
        (f"SHA256 (redox_z.img.zst) = {'c' * 64}\n", {"redox_z.img.zst": "c" * 64}),
        ("<html>not a checksum file</html>\n\n", {}),
    ],
)
def test_parse_checksums(text: str, expected: dict[str, str]) -> None:
    assert fetch.parse_checksums(text) == expected


def test_the_command_prints_the_image_and_copies_it_writable(server: ImageServer, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    fetch.add_fetch_arguments(parser)
    args = parser.parse_args(["--release", "0.9.0", "--variant", "server", "--out", str(tmp_path / "mine.img")])
    console = quiet()

    assert fetch.fetch_command(args, console) == 0

    output = console.file.getvalue()
    assert "downloaded and verified" in output and RELEASE_NAME in output
    copy = tmp_path / "mine.img"
    assert copy.read_bytes() == server.originals[RELEASE_DIR + RELEASE_NAME]
    assert os.access(copy, os.W_OK) and stat.S_IMODE(copy.stat().st_mode) == 0o644
    with pytest.raises(SystemExit):
        parser.parse_args(["--release", "0.9.0", "--daily"])


def test_the_catalog_is_linked_from_images_and_names_the_documented_release_files() -> None:
    repo = Path(__file__).resolve().parents[1]
    assert (repo / "images" / "redox-images.toml").resolve() == (repo / "hil/image/data/redox-images.toml")
    catalog = fetch.load_catalog(repo / "images" / "redox-images.toml")
    release = catalog.releases["0.9.0"]
    assert (
        catalog.file_name("demo", release.stamp, release.suffix)
        == "redox_demo_x86_64_2024-09-07_1225_harddrive.img.zst"
    )
    assert catalog.pattern("server").match("redox_server_x86_64_2025-12-29_200_harddrive.img.zst")
