"""The examples' sources at the pinned tokio release, from wherever they can be had, verified by sha256.

Debian's librust-tokio-dev is the crate as published on crates.io, and tokio's examples live in a separate,
unpublished `examples` crate of tokio's workspace, so the crate has no examples/ folder. hil therefore
looks, in order, at:
1. its own cache (files verified earlier);
2. the Debian crate's examples/ folder, should a future package carry one;
3. HIL_TOKIO_SOURCE: a tokio checkout or unpacked tarball, or a tokio git repository (bare or not) that
   holds the pinned commit;
4. the pinned commit's tarball from GitHub (skipped when HIL_OFFLINE=1).
A file is taken only if its sha256 is the pinned one. hil's repository carries no tokio source.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from hil.errors import InfraError
from hil.paths import cache_dir
from hil.store import atomic_write
from hil.tokio.examples import TOKIO_COMMIT, TOKIO_REPOSITORY, TOKIO_TAG, Example

SOURCE_ENV = "HIL_TOKIO_SOURCE"
DEBIAN_REGISTRY = Path("/usr/share/cargo/registry")
DOWNLOAD_URL = f"{TOKIO_REPOSITORY}/archive/{TOKIO_COMMIT}.tar.gz"
DOWNLOAD_TIMEOUT_S = 60
GIT_TIMEOUT_S = 60

Files = dict[str, bytes]  # example file name -> content


def sources_dir() -> Path:
    return cache_dir() / "tokio" / "sources" / TOKIO_COMMIT


def example_sources(examples: Iterable[Example]) -> Path:
    """A folder holding every wanted example file, verified; InfraError saying where hil looked if not."""
    wanted = {example.file: example.sha256 for example in examples}
    found: Files = {}
    tried: list[str] = []
    for label, reader in _candidates():
        missing = sorted(set(wanted) - set(found))
        if not missing:
            break
        got, problem = _verified(reader(missing), wanted)
        found.update(got)
        tried.append(f"{label}: {problem or f'{len(got)} of {len(missing)} files'}")
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise InfraError(_not_found_message(missing, tried))
    return _store(found)


def _candidates() -> list[tuple[str, Callable[[list[str]], tuple[Files, str]]]]:
    candidates = [
        (f"hil's cache {sources_dir()}", lambda names: _read_folder(sources_dir(), names)),
        (f"Debian's crate in {DEBIAN_REGISTRY}", _read_debian_crate),
    ]
    configured = os.environ.get(SOURCE_ENV)
    if configured:
        candidates.append((f"{SOURCE_ENV}={configured}", lambda names: _read_configured(Path(configured), names)))
    if os.environ.get("HIL_OFFLINE") != "1":
        candidates.append((f"download {DOWNLOAD_URL}", _download))
    return candidates


def _verified(read: tuple[Files, str], wanted: dict[str, str]) -> tuple[Files, str]:
    """Keep the files whose sha256 is the pinned one; say which ones differ."""
    files, problem = read
    good = {name: data for name, data in files.items() if hashlib.sha256(data).hexdigest() == wanted[name]}
    different = sorted(set(files) - set(good))
    if different:
        problem = f"{problem + '; ' if problem else ''}not the {TOKIO_TAG} version: {', '.join(different)}"
    return good, problem


def _read_folder(folder: Path, names: list[str]) -> tuple[Files, str]:
    files = {name: (folder / name).read_bytes() for name in names if (folder / name).is_file()}
    return files, "" if folder.is_dir() else "none there"


def _read_debian_crate(names: list[str]) -> tuple[Files, str]:
    folders = sorted(DEBIAN_REGISTRY.glob("tokio-1.*/examples"))
    if not folders:
        crates = sorted(path.name for path in DEBIAN_REGISTRY.glob("tokio-1.*"))
        return {}, f"{', '.join(crates) or 'no tokio crate'} without an examples/ folder (crates.io has none)"
    files: Files = {}
    for folder in folders:
        files.update(_read_folder(folder, names)[0])
    return files, ""


def _read_configured(path: Path, names: list[str]) -> tuple[Files, str]:
    if (path / "examples").is_dir():
        return _read_folder(path / "examples", names)
    if path.name == "examples" and path.is_dir():
        return _read_folder(path, names)
    if _is_git_repository(path):
        return _read_git(path, names)
    return {}, "neither a tokio source folder (with examples/) nor a git repository"


def _is_git_repository(path: Path) -> bool:
    done = _git(path, "rev-parse", "--git-dir")
    return done is not None and done.returncode == 0


def _read_git(repository: Path, names: list[str]) -> tuple[Files, str]:
    files: Files = {}
    for name in names:
        done = _git(repository, "cat-file", "blob", f"{TOKIO_COMMIT}:examples/{name}")
        if done is None or done.returncode != 0:
            return files, f"the repository lacks commit {TOKIO_COMMIT[:12]} ({TOKIO_TAG}) or examples/{name}"
        files[name] = done.stdout
    return files, ""


def _git(repository: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(["git", "-C", str(repository), *args], capture_output=True, timeout=GIT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _download(names: list[str]) -> tuple[Files, str]:
    try:
        with urllib.request.urlopen(DOWNLOAD_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            archive = response.read()
    except (urllib.error.URLError, OSError) as err:
        return {}, f"failed ({getattr(err, 'reason', err)})"
    files: Files = {}
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[1] == "examples" and parts[2] in names:
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[parts[2]] = extracted.read()
    return files, ""


def _store(files: Files) -> Path:
    """Keep verified files in the cache so later builds need neither the network nor HIL_TOKIO_SOURCE."""
    folder = sources_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        target = folder / name
        if not target.is_file() or target.read_bytes() != data:
            atomic_write(target, data)
    return folder


def _not_found_message(missing: list[str], tried: list[str]) -> str:
    looked = "\n".join(f"    {line}" for line in tried)
    return (
        f"cannot find tokio's examples at {TOKIO_TAG} (commit {TOKIO_COMMIT}): missing {', '.join(missing)}\n"
        f"  hil looked at:\n{looked}\n"
        f"  fix: point {SOURCE_ENV} at a tokio checkout or git repository holding that commit "
        f"(git clone {TOKIO_REPOSITORY}), or allow hil to download {DOWNLOAD_URL}"
    )
