"""Official Redox images: find one on the image server, download it resumably, verify, decompress, cache.

The catalog (data/redox-images.toml) says where releases and daily builds live and how their files are named.
A download goes to a `.partial` file that survives interruptions and is continued with an HTTP Range request;
it is checked against the server's SHA256SUM before anything reads it, decompressed (streaming, sparse)
into a scratch folder with its meta.json, and that is renamed into cache_dir()/images/<sha256>/, where
<sha256> is the digest SHA256SUM published. A cached image is found again without any network access;
HIL_OFFLINE=1 forbids downloads.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import re
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import BinaryIO

import zstandard
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hil import __version__
from hil.cache import CacheArea
from hil.errors import InfraError, UsageError
from hil.store import atomic_output

CATALOG_NAME = "redox-images.toml"
SERVER_ENV = "HIL_IMAGE_SERVER"
OFFLINE_ENV = "HIL_OFFLINE"
META_NAME = "meta.json"
ZSTD_SUFFIX = ".zst"
CHUNK = 1 << 20
TIMEOUT = 60
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_GNU_LINE = re.compile(r"^(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)$")
_BSD_LINE = re.compile(r"^SHA256 \((?P<name>.+)\) = (?P<digest>[0-9a-fA-F]{64})$")
_ZERO_CHUNK = bytes(CHUNK)
# One lock per image (by the digest the server publishes): downloads of different images go on at once.
IMAGES = CacheArea("images", "Waiting for another hil process downloading the same image", lock_per_key=True)
PARTIAL_DIR = "partial"  # downloads in progress, kept across interruptions to be resumed


# --- the catalog ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """One release folder; `stamp` and `suffix` make its file names known without asking the server."""

    name: str
    path: str
    stamp: str | None
    suffix: str
    pinned: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    server: str
    arch: str
    variants: tuple[str, ...]
    default_variant: str
    default_release: str
    checksum_file: str
    image_name: str
    image_pattern: str
    daily_path: str
    releases: dict[str, Release]

    def file_name(self, variant: str, stamp: str, suffix: str) -> str:
        return self.image_name.format(variant=variant, arch=self.arch, stamp=stamp, suffix=suffix)

    def pattern(self, variant: str) -> re.Pattern[str]:
        # str.replace, not format: the regular expression may contain braces of its own.
        text = self.image_pattern.replace("{variant}", re.escape(variant)).replace("{arch}", re.escape(self.arch))
        return re.compile(text)


def load_catalog(path: Path | None = None) -> Catalog:
    """The image catalog shipped with hil (or the TOML file at `path`)."""
    shipped = resources.files("hil.image").joinpath("data", CATALOG_NAME)
    data = tomllib.loads(path.read_text() if path else shipped.read_text())
    releases = {
        name: Release(name, spec["path"], spec.get("stamp"), spec.get("suffix", ".img.zst"), spec.get("sha256", {}))
        for name, spec in data["releases"].items()
    }
    return Catalog(
        server=data["server"],
        arch=data["arch"],
        variants=tuple(data["variants"]),
        default_variant=data["default_variant"],
        default_release=data["default_release"],
        checksum_file=data["checksum_file"],
        image_name=data["image_name"],
        image_pattern=data["image_pattern"],
        daily_path=data["daily"]["path"],
        releases=releases,
    )


def image_server(catalog: Catalog) -> str:
    """The server's base URL, HIL_IMAGE_SERVER first (same folder layout below it)."""
    return (os.environ.get(SERVER_ENV) or catalog.server).rstrip("/")


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


# --- what to fetch -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A request resolved against the catalog: a folder on the server and a file name or a pattern in it."""

    kind: str  # "release", "daily" or "url"
    folder_url: str
    name: str | None
    pattern: re.Pattern[str] | None
    release: str | None
    variant: str | None
    sha256: str | None  # given with --sha256 or pinned in the catalog: the digest of the file `name`

    @property
    def label(self) -> str:
        if self.kind == "url":
            return self.folder_url + (self.name or "")
        when = f"release {self.release}" if self.kind == "release" else "daily"
        return f"the {when} {self.variant} image"


@dataclass(frozen=True)
class Listed:
    """The file to download and the digest that proves it: of the download itself or of the decompressed image."""

    name: str
    url: str
    sha256: str
    covers_download: bool  # False: SHA256SUM lists the decompressed .img of the .img.zst we download
    checksum_url: str | None


def resolve_target(
    catalog: Catalog, release: str | None, daily: bool, variant: str | None, url: str | None, sha256: str | None
) -> Target:
    """Check the request against the catalog; user mistakes become UsageErrors listing what is known."""
    expected = _check_sha256(sha256)
    if url:
        if release or daily:
            raise UsageError("--url names the image itself; drop --release/--daily (or drop --url)")
        folder, _, name = url.rpartition("/")
        if not name:
            raise UsageError(f"--url {url} names a folder, not an image file")
        return Target("url", folder + "/", name, None, None, variant, expected)
    variant = variant or catalog.default_variant
    if variant not in catalog.variants:
        raise UsageError(f"unknown variant {variant!r}; known variants: {', '.join(catalog.variants)}")
    server = image_server(catalog)
    if daily:
        if release:
            raise UsageError("choose one of --release and --daily")
        folder = f"{server}/{catalog.daily_path.format(arch=catalog.arch)}"
        return Target("daily", folder, None, catalog.pattern(variant), None, variant, expected)
    return _release_target(catalog, release or catalog.default_release, variant, server, expected)


def _release_target(catalog: Catalog, release: str, variant: str, server: str, expected: str | None) -> Target:
    spec = catalog.releases.get(release)
    if spec is None:
        known = ", ".join(sorted(catalog.releases, reverse=True))
        raise UsageError(f"unknown release {release!r}; known releases: {known} (or --daily, or --url URL)")
    folder = f"{server}/{spec.path.format(arch=catalog.arch)}"
    name = catalog.file_name(variant, spec.stamp, spec.suffix) if spec.stamp else None
    pinned = spec.pinned.get(variant) if name else None
    if expected and pinned and expected != pinned:
        raise UsageError(f"--sha256 {expected} contradicts the catalog's digest {pinned} for {name}")
    return Target("release", folder, name, catalog.pattern(variant), release, variant, expected or pinned)


def _check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not _HEX64.match(value):
        raise UsageError(f"--sha256 {value!r} is not a SHA-256 digest (64 hexadecimal digits)")
    return value


# --- SHA256SUM -----------------------------------------------------------------------------------------------


def parse_checksums(text: str) -> dict[str, str]:
    """{file name: lower-case hex digest} from GNU (`<hex> *<name>`, `<hex>  <name>`) or BSD style lines."""
    sums: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        match = _GNU_LINE.match(line) or _BSD_LINE.match(line)
        if match:
            sums[match["name"].removeprefix("./")] = match["digest"].lower()
    return sums


def _stamp_key(stamp: str) -> tuple[int, ...]:
    # 2025-12-29_200 -> (2025, 12, 29, 200): dates and build numbers order correctly as numbers.
    return tuple(int(number) for number in re.findall(r"\d+", stamp))


def newest_match(sums: dict[str, str], pattern: re.Pattern[str]) -> str | None:
    """The listed file of the newest build matching `pattern`, its .zst preferred over a plain .img."""
    matches = [(match, name) for name in sums if (match := pattern.match(name))]
    if not matches:
        return None
    ranked = max(matches, key=lambda item: (_stamp_key(item[0]["stamp"]), item[1].endswith(ZSTD_SUFFIX)))
    return ranked[1]


def pick_listed(sums: dict[str, str], target: Target, checksum_url: str) -> Listed:
    """The file to download for `target` and the SHA256SUM line that covers it (whichever of .zst/.img it lists)."""
    name = target.name or (newest_match(sums, target.pattern) if target.pattern else None)
    if name is None:
        shown = ", ".join(sorted(sums)[:8]) or "nothing"
        raise InfraError(f"{checksum_url} lists no file for {target.label} (it lists {shown})")
    image_name = name.removesuffix(ZSTD_SUFFIX)
    if name in sums:
        return Listed(name, target.folder_url + name, sums[name], True, checksum_url)
    if name.endswith(ZSTD_SUFFIX) and image_name in sums:
        return Listed(name, target.folder_url + name, sums[image_name], False, checksum_url)
    if name + ZSTD_SUFFIX in sums:  # the catalog expected a plain .img, the server has the .zst
        return Listed(name + ZSTD_SUFFIX, target.folder_url + name + ZSTD_SUFFIX, sums[name + ZSTD_SUFFIX], True,
                      checksum_url)  # fmt: skip
    raise InfraError(f"{checksum_url} does not list {name} (nor its {ZSTD_SUFFIX} twin), so it cannot be verified")


# --- HTTP ----------------------------------------------------------------------------------------------------


def _request(url: str, offset: int = 0) -> http.client.HTTPResponse:
    headers = {"User-Agent": f"hil/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)
    except urllib.error.HTTPError as error:
        error.close()
        raise
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise InfraError(
            f"cannot reach {url}: {reason}. Check the network (or {SERVER_ENV}, which points hil at another "
            "image server); a cached image needs no network"
        ) from error


def _http_failure(url: str, error: urllib.error.HTTPError) -> InfraError:
    return InfraError(f"GET {url} failed: HTTP {error.code} {error.reason}")


def fetch_text(url: str) -> str:
    try:
        with _request(url) as response:
            return response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        raise _http_failure(url, error) from error
    except (http.client.HTTPException, OSError) as error:
        raise InfraError(f"reading {url} failed: {error}") from error


def _hash_file(path: Path, limit: int | None = None) -> hashlib._Hash:
    digest = hashlib.sha256()
    remaining = path.stat().st_size if limit is None else limit
    with path.open("rb") as stream:
        while remaining > 0 and (chunk := stream.read(min(CHUNK, remaining))):
            digest.update(chunk)
            remaining -= len(chunk)
    return digest


Advance = Callable[[int, int | None], None]  # (bytes so far, total or None)


def download(url: str, partial: Path, advance: Advance) -> str:
    """Download `url` into `partial`, continuing what is already there; the sha256 of the whole file.

    A server that ignores Range (200 instead of 206) makes the download start over. A transfer that stops
    early keeps the partial file, so the next call resumes it.
    """
    offset = partial.stat().st_size if partial.exists() else 0
    try:
        response = _request(url, offset)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:  # nothing beyond what we have: the partial file is complete
            advance(offset, offset)
            return _hash_file(partial).hexdigest()
        raise _http_failure(url, error) from error
    with response:
        if offset and response.status == 206 and not _continues_at(response, offset):
            partial.unlink()  # a range we did not ask for: start over without one
            return download(url, partial, advance)
        offset = offset if response.status == 206 else 0  # 200: the server ignored Range, start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        digest = _hash_file(partial, offset) if offset else hashlib.sha256()
        received = _receive(response, url, partial, offset, digest, lambda done: advance(done, total))
    if total is not None and received < total:
        raise _truncated(url, partial, received, total)
    return digest.hexdigest()


def _continues_at(response: http.client.HTTPResponse, offset: int) -> bool:
    return response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")


def _receive(
    response: BinaryIO, url: str, partial: Path, offset: int, digest: hashlib._Hash, advance: Callable[[int], None]
) -> int:
    received = offset
    try:
        with partial.open("r+b" if offset else "wb") as out:
            out.seek(offset)
            out.truncate()
            advance(received)
            while chunk := _read_chunk(response, url, partial, received):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                advance(received)
    except OSError as error:  # the disk, not the network: a read error is an InfraError already
        raise InfraError(f"cannot write {partial}: {error}") from error
    return received


def _read_chunk(response: BinaryIO, url: str, partial: Path, received: int) -> bytes:
    try:
        return response.read(CHUNK)
    except (http.client.HTTPException, OSError) as error:
        raise _truncated(url, partial, received, None, error) from error


def _truncated(url: str, partial: Path, received: int, total: int | None, error: Exception | None = None) -> InfraError:
    of_total = f" of {total}" if total is not None else ""
    cause = f" ({error})" if error else ""
    return InfraError(
        f"the download of {url} stopped after {received}{of_total} bytes{cause}; the part received is kept in "
        f"{partial}: run the same command again to resume it"
    )


# --- the cache -----------------------------------------------------------------------------------------------


def images_dir() -> Path:
    return IMAGES.root


@dataclass(frozen=True)
class FetchedImage:
    """An image in hil's cache. `sha256` is the digest the server published (for the .img.zst or the .img,
    whichever its SHA256SUM lists); `image_sha256` is the digest of the decompressed image at `path`."""

    path: Path
    sha256: str
    url: str
    release: str | None
    variant: str | None
    cached: bool
    image_sha256: str = ""


def _cached_images() -> Iterator[tuple[dict, Path]]:
    for folder in IMAGES.entries():
        found = _read_entry(folder)
        if found is not None:
            yield found


def _read_entry(folder: Path) -> tuple[dict, Path] | None:
    """The meta and the image of a cached image's folder, or None if it is not one."""
    with contextlib.suppress(OSError, ValueError, KeyError):
        meta = json.loads((folder / META_NAME).read_text())
        image = folder / meta["image"]
        if image.is_file():
            return meta, image
    return None


def _as_fetched(meta: dict, image: Path, cached: bool) -> FetchedImage:
    return FetchedImage(image, meta["sha256"], meta["url"], meta.get("release"), meta.get("variant"), cached,
                        meta.get("image_sha256", ""))  # fmt: skip


def find_cached(target: Target, arch: str) -> FetchedImage | None:
    """The cached image answering `target` without the network, the newest if several do."""
    found = [(meta, image) for meta, image in _cached_images() if _answers(meta, target, arch)]
    if not found:
        return None
    meta, image = max(found, key=lambda item: (_stamp_key(item[0].get("stamp") or ""), item[0].get("fetched", 0)))
    return _as_fetched(meta, image, cached=True)


def list_cached() -> list[FetchedImage]:
    """Every complete image in the cache (for `hil doctor` and the like), newest download first."""
    found = sorted(_cached_images(), key=lambda item: item[0].get("fetched", 0), reverse=True)
    return [_as_fetched(meta, image, cached=True) for meta, image in found]


def _answers(meta: dict, target: Target, arch: str) -> bool:
    if target.sha256 and meta["sha256"] != target.sha256:
        return False
    if target.kind == "url":
        return bool(target.sha256) or meta["url"] == target.folder_url + (target.name or "")
    same = (meta.get("kind"), meta.get("variant"), meta.get("arch")) == (target.kind, target.variant, arch)
    return same and (target.kind == "daily" or meta.get("release") == target.release)


def _cached_digest(digest: str) -> FetchedImage | None:
    folder = IMAGES.find(digest)
    found = _read_entry(folder) if folder is not None else None
    return _as_fetched(*found, cached=True) if found is not None else None


# --- fetching ------------------------------------------------------------------------------------------------


def fetch_image(
    release: str | None,
    daily: bool,
    variant: str | None,
    url: str | None = None,
    console: Console | None = None,
    *,
    sha256: str | None = None,
    progress: Progress | None = None,
    catalog: Catalog | None = None,
) -> FetchedImage:
    """The requested official image, from the cache or downloaded, verified and decompressed into it."""
    console = console or Console(stderr=True)
    catalog = catalog or load_catalog()
    target = resolve_target(catalog, release, daily, variant, url, sha256)
    if target.kind != "daily" or offline():  # a daily's newest build is only known by asking the server
        cached = find_cached(target, catalog.arch)
        if cached:
            return cached
    if offline():
        raise InfraError(
            f"{OFFLINE_ENV}=1 forbids downloads and {target.label} is not in the cache ({images_dir()}); "
            f"unset {OFFLINE_ENV} to download it"
        )
    listed = _listed(target, catalog)
    with IMAGES.lock(listed.sha256, console):  # parallel test workers may all ask for the same image
        cached = _cached_digest(listed.sha256)
        if cached:
            return cached
        return _download_and_publish(listed, target, catalog, console, progress)


def _listed(target: Target, catalog: Catalog) -> Listed:
    if target.sha256 and target.name:  # the digest is known: no SHA256SUM needed
        return Listed(target.name, target.folder_url + target.name, target.sha256, True, None)
    checksum_url = target.folder_url + catalog.checksum_file
    listed = pick_listed(parse_checksums(fetch_text(checksum_url)), target, checksum_url)
    if target.sha256 and listed.sha256 != target.sha256:
        raise InfraError(f"{checksum_url} lists {listed.sha256} for {listed.name}, but {target.sha256} was expected")
    return listed


def _download_and_publish(
    listed: Listed, target: Target, catalog: Catalog, console: Console, progress: Progress | None
) -> FetchedImage:
    partial = _partial_file(listed)
    with _progress(console, progress) as bar:
        task = bar.add_task(f"download {listed.name}", total=None)
        actual = download(listed.url, partial, lambda done, total: bar.update(task, completed=done, total=total))
        if listed.covers_download and actual != listed.sha256:
            partial.unlink(missing_ok=True)
            raise _mismatch(listed, listed.name, actual)
        return _publish(partial, listed, target, catalog, bar, actual)


def _partial_file(listed: Listed) -> Path:
    """Where `listed` downloads to, and stays until complete; partial files of older builds of it go."""
    partial_dir = IMAGES.root / PARTIAL_DIR
    partial_dir.mkdir(parents=True, exist_ok=True)
    partial = partial_dir / f"{listed.sha256[:16]}-{listed.name}.partial"
    for stale in partial_dir.glob(f"*-{listed.name}.partial"):
        if stale != partial:  # the server has rebuilt this file since: its old bytes are of no use
            stale.unlink(missing_ok=True)
    return partial


def _publish(
    partial: Path, listed: Listed, target: Target, catalog: Catalog, bar: Progress, download_sha256: str
) -> FetchedImage:
    """The verified download as a cache entry: the image (read-only) and its meta.json, renamed into place."""
    image_name = listed.name.removesuffix(ZSTD_SUFFIX)
    final = IMAGES.path(listed.sha256)
    with IMAGES.scratch(listed.sha256) as scratch:
        entry = scratch / "entry"  # not the scratch folder itself, which mkdtemp makes private
        try:
            entry.mkdir()
            image_sha256 = _install(partial, listed, entry / image_name, bar, download_sha256)
        except OSError as error:
            raise InfraError(f"cannot write the image {final / image_name}: {error}") from error
        meta = _meta(listed, target, catalog, image_name, image_sha256)
        (entry / META_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        IMAGES.publish(entry, listed.sha256)
    return _as_fetched(meta, final / image_name, cached=False)


def _install(partial: Path, listed: Listed, image: Path, bar: Progress, download_sha256: str) -> str:
    """Put the verified download at `image` (in the scratch folder) read-only, decompressed if need be; the
    image's own sha256."""
    if not listed.name.endswith(ZSTD_SUFFIX):
        partial.chmod(0o444)
        os.replace(partial, image)
        return download_sha256
    with image.open("wb") as out:
        image_sha256 = _decompress(partial, out, listed, bar)
    if not listed.covers_download and image_sha256 != listed.sha256:
        partial.unlink(missing_ok=True)
        raise _mismatch(listed, image.name, image_sha256)
    image.chmod(0o444)
    partial.unlink(missing_ok=True)
    return image_sha256


def _decompress(source: Path, out: BinaryIO, listed: Listed, bar: Progress) -> str:
    task = bar.add_task(f"decompress {listed.name}", total=source.stat().st_size)
    digest = hashlib.sha256()
    try:
        with source.open("rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as z:
            while chunk := z.read(CHUNK):
                digest.update(chunk)
                _write_sparse(out, chunk)
                bar.update(task, completed=raw.tell())
    except zstandard.ZstdError as error:
        source.unlink(missing_ok=True)
        raise InfraError(f"{listed.url} is not valid zstd data ({error}); the download was deleted") from error
    out.truncate()  # gives the file its full size when it ends in a hole
    return digest.hexdigest()


def _copy_sparse(source: Path, out: BinaryIO) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            _write_sparse(out, chunk)
    out.truncate()
    return digest.hexdigest()


def _write_sparse(out: BinaryIO, chunk: bytes) -> None:
    # Disk images are mostly zeros: leave holes instead of writing them.
    if len(chunk) == CHUNK and chunk == _ZERO_CHUNK:
        out.seek(len(chunk), os.SEEK_CUR)
    else:
        out.write(chunk)


def _mismatch(listed: Listed, what: str, actual: str) -> InfraError:
    source = listed.checksum_url or "--sha256"
    return InfraError(
        f"checksum mismatch for {what} from {listed.url}: expected {listed.sha256} ({source}), got {actual}; "
        "the download was deleted, run the command again to download it afresh"
    )


def _meta(listed: Listed, target: Target, catalog: Catalog, image_name: str, image_sha256: str) -> dict:
    match = target.pattern.match(listed.name) if target.pattern else None
    return {
        "kind": target.kind,
        "release": target.release,
        "variant": target.variant,
        "arch": catalog.arch,
        "stamp": match["stamp"] if match else None,
        "url": listed.url,
        "name": listed.name,
        "sha256": listed.sha256,
        "sha256_of": listed.name if listed.covers_download else image_name,
        "checksum_url": listed.checksum_url,
        "image": image_name,
        "image_sha256": image_sha256,
        "fetched": time.time(),
    }


@contextlib.contextmanager
def _progress(console: Console, progress: Progress | None) -> Iterator[Progress]:
    if progress is not None:
        yield progress
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        yield bar


# --- the command ---------------------------------------------------------------------------------------------


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    """The options `fetch_command` reads, for the CLI to attach to `hil image fetch`."""
    catalog = load_catalog()
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--release",
        metavar="VERSION",
        help=f"an official release: {', '.join(catalog.releases)} (default: {catalog.default_release})",
    )
    which.add_argument("--daily", action="store_true", help="the newest daily build from the image server")
    which.add_argument("--url", help="an explicit image URL (.img.zst or .img), verified by --sha256 or the "
                       "SHA256SUM beside it")  # fmt: skip
    parser.add_argument("--variant", choices=catalog.variants, default=None,
                        help=f"image variant (default: {catalog.default_variant})")  # fmt: skip
    parser.add_argument("--sha256", metavar="HEX", help="the expected sha256 of the file downloaded")
    parser.add_argument("--out", type=Path, metavar="PATH", help="also copy the image here (a writable copy)")


def fetch_command(args: argparse.Namespace, console: Console) -> int:
    """`hil image fetch`; expects the attributes `add_fetch_arguments` defines."""
    image = fetch_image(
        getattr(args, "release", None), bool(getattr(args, "daily", False)), getattr(args, "variant", None),
        getattr(args, "url", None), console, sha256=getattr(args, "sha256", None),
    )  # fmt: skip
    state = "cached" if image.cached else "downloaded and verified"
    console.print(f"[bold]{escape(str(image.path))}[/] ({state})", soft_wrap=True, highlight=False)
    console.print(f"  from   {image.url}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"  sha256 {image.sha256} (as published)", markup=False, highlight=False)
    if image.image_sha256:
        console.print(f"  image  {image.image_sha256} (decompressed)", markup=False, highlight=False)
    out = getattr(args, "out", None)
    if out:
        written = copy_image(image.path, Path(out))
        console.print(f"  copied to {written}", soft_wrap=True, markup=False, highlight=False)
    return 0


def copy_image(image: Path, out: Path) -> Path:
    """A writable, sparse copy of a cached image (the cache's own file stays read-only)."""
    destination = out / image.name if out.is_dir() else out
    try:
        with atomic_output(destination, mode=0o644) as scratch, scratch.open("wb") as stream:
            _copy_sparse(image, stream)
    except OSError as error:
        raise InfraError(f"cannot write {destination}: {error}") from error
    return destination
