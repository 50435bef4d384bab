"""Where hil keeps its cache, its run folders and its private sockets."""

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from hil.errors import UsageError
from hil.store import atomic_write


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def cache_dir() -> Path:
    """Built guests, downloaded images, snapshots: safe to delete, costly to rebuild."""
    override = os.environ.get("HIL_CACHE_DIR")
    return Path(override) if override else _xdg("XDG_CACHE_HOME", ".cache") / "hil"


def state_dir() -> Path:
    """Run folders (artifacts and report.json) and the registry of kept VMs."""
    override = os.environ.get("HIL_STATE_DIR")
    return Path(override) if override else _xdg("XDG_STATE_HOME", ".local/state") / "hil"


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it readable by the user only."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def writable_dir(flag: str, path: Path, private: bool = True) -> Path:
    """`path` as a folder hil can write in (created if missing; made private unless told otherwise), or a
    UsageError naming `flag`."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file, not a folder. Fix: give a folder (hil creates it if missing)")
    try:
        if private:
            private_dir(path)
        else:
            path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot write there ({err.strerror or err}). "
                         "Fix: give a folder you can write in") from None  # fmt: skip
    return path


def writable_file(flag: str, path: Path) -> Path:
    """`path` as a file hil can (over)write: not a folder, in a folder it can write in."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a folder. Fix: give a file name, e.g. {path / 'report.xml'}")
    try:
        writable_dir(flag, path.parent, private=False)
    except UsageError as err:
        raise UsageError(str(err).replace(f"{flag} {path.parent}:", f"{flag} {path}: in {path.parent}:", 1)) from None
    return path


def new_run_dir(label: str, parent: Path | None = None) -> Path:
    """A fresh, private folder for one run's artifacts, named by time and label."""
    base = private_dir(parent or state_dir() / "runs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{stamp}-{label}-", dir=base))


SOCKET_PREFIX = "hil-sock-"  # only folders made here: other hil- temporary folders are not ours to sweep
SOCKET_OWNERS = "owners"  # one "pid start-time" line per process the folder serves (hil, then QEMU)
UNOWNED_GRACE_SECONDS = 3600.0  # a folder with no owners file yet may be one being made right now


def socket_base() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir())


def new_socket_dir() -> Path:
    """A short private folder for unix sockets (paths must stay under 108 bytes), owned by this process.

    Folders left behind by processes that are gone (hil killed with SIGKILL, its QEMU dead with it) are
    removed first.
    """
    base = socket_base()
    remove_stale_socket_dirs(base)
    folder = Path(tempfile.mkdtemp(prefix=SOCKET_PREFIX, dir=base))
    add_socket_owner(folder, os.getpid())
    return folder


def add_socket_owner(folder: Path, pid: int) -> None:
    """`pid` uses the sockets in `folder`; the folder stays while any owner lives (QEMU of a kept VM)."""
    path = folder / SOCKET_OWNERS
    known = path.read_text(encoding="ascii") if path.exists() else ""
    # Replaced whole, never appended to: a sweeping hil must not read a half-written (or empty) list.
    atomic_write(path, f"{known}{pid} {_start_time(pid)}\n", mode=0o600)


def remove_stale_socket_dirs(base: Path) -> list[Path]:
    """Remove this user's hil socket folders whose every owner has exited; returns those removed."""
    removed = []
    for folder in base.glob(f"{SOCKET_PREFIX}*"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and folder.stat().st_uid == os.getuid() and _stale(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def _stale(folder: Path) -> bool:
    try:
        lines = (folder / SOCKET_OWNERS).read_text(encoding="ascii").split("\n")
    except FileNotFoundError:
        return time.time() - folder.stat().st_mtime > UNOWNED_GRACE_SECONDS
    owners = [line.split() for line in lines if line.strip()]
    if not owners:  # being made right now (older hil versions appended to an empty file)
        return time.time() - folder.stat().st_mtime > UNOWNED_GRACE_SECONDS
    return not any(len(owner) == 2 and _start_time(int(owner[0])) == owner[1] for owner in owners)


def _start_time(pid: int) -> str:
    """When `pid` started (clock ticks since boot), so a reused pid is not taken for the owner; "" if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 and fields[0] not in ("Z", "X") else ""
