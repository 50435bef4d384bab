"""A Redox package repository: a folder or an http(s) base URL with `repo.toml` and `NAME.toml` + `NAME.pkgar`.

`NAME.toml` is what the cookbook writes for each package: `name`, `version`, `target`, `depends = [...]`
and, in newer builds, `blake3` (hex of the pkgar header's entry-table hash), `network_size` (the .pkgar's
size) and `storage_size`. `repo.toml` maps package names to versions (or blake3s) under `[packages]`.

Downloads go through urllib into hil's cache (`cache_dir()/pkgar/<host+path>/`), by name and blake3 when the
metadata has one, so a package seen once is not fetched again; HIL_OFFLINE=1 forbids the network.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hil import paths
from hil.errors import InfraError, UsageError
from hil.image.redox.pkgar import Package, PkgarError
from hil.store import atomic_output

# progress(what, bytes_done, bytes_total or None): called while a file downloads
Progress = Callable[[str, int, int | None], None]
OFFLINE_ENV = "HIL_OFFLINE"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_CHUNK = 1 << 16


@dataclass(frozen=True)
class PackageInfo:
    """The metadata of one package (its NAME.toml)."""

    name: str
    version: str = ""
    target: str = ""
    depends: tuple[str, ...] = ()
    blake3: str = ""
    network_size: int = 0
    extra: dict = field(default_factory=dict, compare=False)


class PackageRepo:
    """Packages by name from a local folder or a URL, checked (signature, hashes, metadata blake3)."""

    def __init__(
        self,
        source: str | Path,
        public_key: bytes | None = None,
        progress: Progress | None = None,
        cache: Path | None = None,
    ) -> None:
        text = str(source)
        self.is_remote = text.startswith(("http://", "https://"))
        self.source = text.rstrip("/") if self.is_remote else text
        self.public_key = public_key
        self.progress = progress
        if self.is_remote:
            self.cache = cache or _remote_cache(self.source)
        else:
            check_package_folder(text)
            self.cache = Path(text)
        self._infos: dict[str, PackageInfo] = {}

    def names(self) -> list[str]:
        """Package names listed by repo.toml, or found as NAME.toml beside it when there is none."""
        text = self._text("repo.toml", required=False)
        if text is not None:
            table = _parse_toml(text, self._where("repo.toml")).get("packages", {})
            return sorted(table)
        if self.is_remote:
            raise InfraError(f"{self._where('repo.toml')}: not found, so the repository's packages are unknown")
        return sorted(p.stem for p in self.cache.glob("*.toml") if p.stem != "repo")

    def info(self, name: str) -> PackageInfo:
        if name not in self._infos:
            self._infos[name] = self._load_info(name)
        return self._infos[name]

    def resolve(self, names: Iterable[str]) -> list[str]:
        """`names` and everything they depend on, each once, dependencies before their dependents."""
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str, wanted_by: str | None) -> None:
            if name in ordered or name in visiting:
                return  # done, or a dependency cycle, which pkg tolerates as well
            visiting.add(name)
            try:
                depends = self.info(name).depends
            except UsageError:
                if wanted_by:
                    raise UsageError(f"package {wanted_by!r} depends on {name!r}, which {self.source} lacks") from None
                raise
            for dependency in depends:
                visit(dependency, name)
            visiting.discard(name)
            ordered.append(name)

        for name in names:
            visit(name, None)
        return ordered

    def package(self, name: str) -> Package:
        """The checked package; its entry-table blake3 must match the metadata's when that names one."""
        info = self.info(name)
        path = self._pkgar_path(info)
        try:
            package = Package(self._pkgar_bytes(path, info), str(path), self.public_key)
            digest = package.header.entries_blake3.hex()
            if info.blake3 and info.blake3.lower() != digest:
                if self.is_remote:
                    path.unlink(missing_ok=True)  # a stale or damaged download must not stick in the cache
                raise PkgarError(f"{path}: entry-table blake3 {digest} differs from {info.blake3} in {name}.toml")
        except PkgarError as err:
            if self.is_remote:
                raise  # a download gone wrong: infra, and worth another try
            # The user's own file: another try reads the same bytes, so it is usage (2), not infra (3).
            raise UsageError(f"{err}. Fix: rebuild or copy the package again") from None
        return package

    # --- metadata ---------------------------------------------------------------------------------------------

    def _load_info(self, name: str) -> PackageInfo:
        if not _NAME.match(name):
            raise UsageError(f"{name!r} is not a package name")
        text = self._text(f"{name}.toml", required=True)
        table = _parse_toml(text, self._where(f"{name}.toml"))
        depends = table.get("depends", [])
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            raise InfraError(f"{self._where(name + '.toml')}: `depends` must be a list of package names")
        return PackageInfo(
            name=str(table.get("name", name)),
            version=str(table.get("version", "")),
            target=str(table.get("target", "")),
            depends=tuple(depends),
            blake3=str(table.get("blake3", "")),
            network_size=int(table.get("network_size", 0) or 0),
            extra=table,
        )

    def _text(self, file_name: str, required: bool) -> str | None:
        if not self.is_remote:
            path = self.cache / file_name
            if path.is_file():
                return path.read_text(encoding="utf-8", errors="replace")
            if required:
                raise UsageError(f"{path}: no such package metadata (is the package in {self.source}?)")
            return None
        return self._remote_text(file_name, required)

    def _remote_text(self, file_name: str, required: bool) -> str | None:
        cached = self.cache / file_name
        if _offline():
            if cached.is_file():
                return cached.read_text(encoding="utf-8", errors="replace")
            if required:
                raise InfraError(f"{OFFLINE_ENV}=1 and {self._where(file_name)} is not in the cache ({cached})")
            return None
        try:
            _download(self._where(file_name), cached, None)
        except _NotFound:
            if required:
                raise UsageError(f"{self._where(file_name)}: not found (is the package in {self.source}?)") from None
            return None
        return cached.read_text(encoding="utf-8", errors="replace")

    def _where(self, file_name: str) -> str:
        return f"{self.source}/{file_name}" if self.is_remote else str(self.cache / file_name)

    # --- package files ----------------------------------------------------------------------------------------

    def _pkgar_path(self, info: PackageInfo) -> Path:
        if not self.is_remote:
            return self.cache / f"{info.name}.pkgar"
        suffix = f".{info.blake3[:16]}" if info.blake3 else ""
        return self.cache / f"{info.name}{suffix}.pkgar"

    def _pkgar_bytes(self, path: Path, info: PackageInfo) -> bytes:
        if self.is_remote and not (info.blake3 and path.is_file()):
            if _offline():
                raise InfraError(f"{OFFLINE_ENV}=1 and {info.name}.pkgar is not in the cache ({path})")
            try:
                _download(self._where(f"{info.name}.pkgar"), path, self._reporter(info))
            except _NotFound:
                raise UsageError(f"{self._where(info.name + '.pkgar')}: not found") from None
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise UsageError(f"{path}: no such package file ({info.name}.toml is there, its .pkgar is not)") from None

    def _reporter(self, info: PackageInfo) -> Callable[[int, int | None], None] | None:
        if self.progress is None:
            return None
        progress = self.progress
        return lambda done, total: progress(f"{info.name}.pkgar", done, total or info.network_size or None)


class _NotFound(Exception):
    pass


def _download(url: str, destination: Path, report: Callable[[int, int | None], None] | None) -> None:
    """Fetch `url` into `destination` atomically (temp file + rename)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            _stream_to(response, destination, total, report)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise _NotFound(url) from None
        raise InfraError(f"download of {url} failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise InfraError(f"download of {url} failed: {reason}") from None


def _stream_to(response, destination: Path, total: int | None, report) -> None:
    done = 0
    with atomic_output(destination) as temporary:
        with temporary.open("wb") as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if report:
                    report(done, total)
        if total is not None and done != total:
            raise InfraError(f"download of {response.url} stopped at {done} of {total} bytes")


def _remote_cache(url: str) -> Path:
    parsed = urllib.parse.urlparse(url)
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{parsed.netloc}{parsed.path}").strip("_")[:80]
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    return paths.cache_dir() / "pkgar" / f"{readable}-{digest}"


def _parse_toml(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise InfraError(f"{where}: not valid TOML: {error}") from None


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")


def check_packages(packages: str, names: Iterable[str]) -> None:
    """Before a run makes anything: the local packages `names` and what they depend on are there and each opens
    as a sound pkgar (size, header, signature, entry table, every entry's data inside the file), else a
    UsageError naming the file, what is wrong and the fix. Every file's data is checked against its blake3 too
    (63 MB of packages in 0.1 s), so a corrupt file is the user's mistake found here, not an infra verdict as the
    image is written. A URL's packages are checked as they download (a bad download is infra)."""
    if packages.startswith(("http://", "https://")):
        return
    check_package_folder(packages)
    repo = PackageRepo(packages)
    for name in repo.resolve(names):
        path = repo.cache / f"{name}.pkgar"
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise UsageError(f"{path}: no such package file ({name}.toml is there, its .pkgar is not). "
                             f"Fix: build or copy the package into {packages}") from None  # fmt: skip
        _check_package_once(packages, name, str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _check_package_once(packages: str, name: str, path: str, size: int, mtime_ns: int) -> None:
    """One check per file as it is (a run checks its options more than once); a failure is not cached."""
    package = PackageRepo(packages).package(name)
    try:
        for _ in package.files():  # each read checks the data's blake3 (and unpacks it)
            pass
    except PkgarError as err:
        raise UsageError(f"{err}. Fix: rebuild or copy the package again") from None


def check_package_folder(packages: str) -> None:
    """A local package folder must be the one holding NAME.pkgar + NAME.toml (the target folder itself)."""
    if packages.startswith(("http://", "https://")):
        return
    folder = Path(packages)
    if not folder.is_dir():
        raise UsageError(f"--packages {packages}: no such folder. Fix: give the package folder (the one holding "
                         "kernel.pkgar and kernel.toml) or an http(s) URL")  # fmt: skip
    if any(folder.glob("*.toml")):
        return
    inner = sorted(p.name for p in folder.glob("*-unknown-redox") if p.is_dir())
    hint = f"; it holds {inner[0]}/: give {folder / inner[0]}" if inner else ""
    raise UsageError(f"--packages {packages}: no NAME.toml or repo.toml in this folder{hint}. Fix: give the "
                     "folder holding NAME.pkgar + NAME.toml")  # fmt: skip
