"""Resolve, download and unpack Debian packages with the host's own apt and dpkg-deb, nothing installed.

Versions come from the local apt lists (`apt-cache`, no network); `apt-get download` fetches the .deb into
hil's cache, where it is kept by name and version. HIL_DEB_DIR may point at a folder of pre-downloaded
.debs: a file there with the right Package and Version is used without any network at all, and when
apt knows nothing about a package the newest version in that folder is taken.
"""

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hil.cache import CacheArea
from hil.errors import InfraError

DEB_DIR_ENV = "HIL_DEB_DIR"
UPDATE_HINT = "run `apt-get update` (as root) so apt's package lists are current"
_CANDIDATE = re.compile(r"^\s*Candidate:\s*(\S+)", re.MULTILINE)
_DEPENDENCY = re.compile(r"(?P<name>[^\s:(]+)(?::\S+)?\s*(?:\((?P<op>[<>=]+)\s*(?P<version>[^)\s]+)\s*\))?")


@dataclass(frozen=True)
class DebPackage:
    """A .deb on disk, as resolved and checked."""

    name: str
    version: str
    path: Path
    sha256: str


def _run(argv: list[str], cwd: Path | None = None, fix: str = UPDATE_HINT) -> str:
    """Run a packaging tool; its combined output on success, an InfraError naming the command otherwise."""
    try:
        result = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, check=False, env={**os.environ, "LC_ALL": "C"}
        )
    except FileNotFoundError as error:
        raise InfraError(
            f"`{argv[0]}` is not installed; hil builds its reference guest from Debian packages with "
            "apt-get, apt-cache and dpkg-deb, so it needs a Debian-based host"
        ) from error
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip() or "(no output)"
        raise InfraError(f"`{' '.join(argv)}` failed with exit code {result.returncode}:\n{output}\nFix: {fix}")
    return result.stdout


def deb_dir() -> Path | None:
    value = os.environ.get(DEB_DIR_ENV)
    return Path(value) if value else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def control_fields(deb: Path, *fields: str) -> dict[str, str]:
    """Fields of a .deb's control file (`dpkg-deb -f`); missing fields are absent from the result."""
    output = _run(["dpkg-deb", "-f", str(deb), *fields], fix=f"check that {deb} is a valid .deb")
    if len(fields) == 1:
        return {fields[0]: output.strip()} if output.strip() else {}
    return _parse_stanza(output)


def _parse_stanza(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # only the first stanza: apt-cache may list one per archive carrying the version
            continue
        if line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            fields[key] = value.strip()
    return fields


def _newest(versions: list[tuple[str, Path]]) -> tuple[str, Path]:
    """The newest (version, path) by dpkg's own ordering."""
    best = versions[0]
    for candidate in versions[1:]:
        newer = subprocess.run(["dpkg", "--compare-versions", candidate[0], "gt", best[0]], check=False)
        if newer.returncode == 0:
            best = candidate
    return best


def debs_in_dir(folder: Path, name: str) -> list[tuple[str, Path]]:
    """(version, path) of every .deb of package `name` in `folder`, checked through its control file."""
    found = []
    for path in sorted(folder.glob(f"{name}_*.deb")):
        fields = control_fields(path, "Package", "Version")
        if fields.get("Package") == name and "Version" in fields:
            found.append((fields["Version"], path))
    return found


def candidate_versions(names: list[str]) -> dict[str, str]:
    """The versions apt would install, from its local lists in one `apt-cache policy` call.

    A package apt does not know falls back to the newest version in HIL_DEB_DIR.
    """
    known = _parse_policy(_run(["apt-cache", "policy", *names]))
    return {name: known.get(name) or _newest_in_deb_dir(name) for name in names}


def candidate_version(name: str) -> str:
    return candidate_versions([name])[name]


def _parse_policy(output: str) -> dict[str, str]:
    """Package -> candidate from `apt-cache policy` output (a "name:" line, then indented fields)."""
    candidates: dict[str, str] = {}
    package = None
    for line in output.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            package = line[:-1]
        elif package and (match := _CANDIDATE.match(line)) and match.group(1) != "(none)":
            candidates[package] = match.group(1)
    return candidates


def _newest_in_deb_dir(name: str) -> str:
    folder = deb_dir()
    if folder and (local := debs_in_dir(folder, name)):
        return _newest(local)[0]
    where = f" and no {name}_*.deb is in {DEB_DIR_ENV}={folder}" if folder else ""
    raise InfraError(f"apt knows no installable version of Debian package {name}{where}.\nFix: {UPDATE_HINT}")


@dataclass(frozen=True)
class Dependency:
    name: str
    exact_version: str | None  # set for "(= VERSION)" constraints


def depends(name: str, version: str) -> list[Dependency]:
    """The Depends field of name=version: first alternative of each, with exact pins kept."""
    folder = deb_dir()
    local = [path for found, path in debs_in_dir(folder, name) if found == version] if folder else []
    if local:
        field = control_fields(local[0], "Depends").get("Depends", "")
    else:
        field = _parse_stanza(_run(["apt-cache", "show", f"{name}={version}"])).get("Depends", "")
    return [_parse_dependency(item) for item in field.split(",") if item.strip()]


def _parse_dependency(item: str) -> Dependency:
    """ "linux-image-6.1.0-56-amd64 (= 6.1.192-2)" -> Dependency("linux-image-6.1.0-56-amd64", "6.1.192-2")"""
    match = _DEPENDENCY.match(item.split("|")[0].strip())
    if match is None:
        raise InfraError(f"cannot parse the Debian dependency {item!r}")
    exact = match.group("version") if match.group("op") == "=" else None
    return Dependency(match.group("name"), exact)


def resolve_kernel_package(meta: str, meta_version: str | None = None) -> tuple[str, str]:
    """Follow a meta package such as linux-image-amd64 to the concrete linux-image-6.1.0-NN-amd64."""
    version = meta_version or candidate_version(meta)
    images = [dep for dep in depends(meta, version) if dep.name.startswith("linux-image-")]
    if not images:
        raise InfraError(f"{meta} {version} depends on no linux-image-* package; cannot find the kernel")
    # The meta package pins its kernel exactly, which saves asking apt again.
    return images[0].name, images[0].exact_version or candidate_version(images[0].name)


def deb_filename_version(version: str) -> str:
    """apt-get download names files with the epoch colon escaped ("1:1.35" becomes "1%3a1.35")."""
    return version.replace(":", "%3a")


def fetch_all(versions: dict[str, str], cache: Path) -> list[DebPackage]:
    """The .debs of every name=version, sorted by name: from HIL_DEB_DIR, the cache, or downloaded."""
    paths = {name: find_local(name, version, cache) for name, version in versions.items()}
    missing = {name: versions[name] for name, path in paths.items() if path is None}
    if missing:
        paths.update(download(missing, cache))
    return [DebPackage(name, versions[name], paths[name], sha256_file(paths[name])) for name in sorted(versions)]


def fetch(name: str, version: str, cache: Path) -> DebPackage:
    return fetch_all({name: version}, cache)[0]


def missing_packages(versions: dict[str, str], cache: Path) -> dict[str, str]:
    """The name=version pairs that neither HIL_DEB_DIR nor the cache holds (they need a download)."""
    return {name: version for name, version in versions.items() if find_local(name, version, cache) is None}


def find_local(name: str, version: str, cache: Path) -> Path | None:
    folder = deb_dir()
    if folder and folder.is_dir():
        for found, path in debs_in_dir(folder, name):
            if found == version:
                return path
    cached = sorted(cache.glob(f"{name}_{deb_filename_version(version)}_*.deb"))
    return cached[0] if cached else None


def download(versions: dict[str, str], cache: Path) -> dict[str, Path]:
    """Download all in one apt-get call (each call costs ~0.5 s of list loading) into a scratch folder of
    the cache, then publish the files, so a broken download is never cached.

    No lock of its own (the folder holds .debs only): the caller serializes downloads into `cache`.
    """
    area = CacheArea(cache)
    wanted = [f"{name}={version}" for name, version in sorted(versions.items())]
    with area.scratch() as scratch:
        # apt warns "Download is performed unsandboxed" as root when _apt cannot write here: harmless.
        _run(
            ["apt-get", "download", "-q", *wanted],
            cwd=scratch,
            fix=f"{UPDATE_HINT}, check that the Debian mirror is reachable, "
            f"or put the .deb files into a folder named by {DEB_DIR_ENV}",
        )
        downloaded = {name: _downloaded(scratch, name, version) for name, version in versions.items()}
        return {name: area.publish(deb, deb.name) for name, deb in downloaded.items()}


def _downloaded(scratch: Path, name: str, version: str) -> Path:
    found = sorted(scratch.glob(f"{name}_{deb_filename_version(version)}_*.deb"))
    if len(found) != 1:
        raise InfraError(f"`apt-get download {name}={version}` left {len(found)} matching .deb files, expected one")
    return found[0]


def extract(deb: Path, destination: Path) -> None:
    """Unpack a .deb's files (not its scripts) under `destination` with `dpkg-deb -x`."""
    destination.mkdir(parents=True, exist_ok=True)
    if shutil.which("dpkg-deb") is None:
        raise InfraError("dpkg-deb is not installed; it is needed to unpack Debian packages (apt-get install dpkg)")
    _run(["dpkg-deb", "-x", str(deb), str(destination)], fix=f"delete {deb} so that it is downloaded again")
