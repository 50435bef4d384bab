"""Where hil keeps its cache, its run folders and its private sockets."""

import contextlib
import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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


def new_run_dir(label: str, parent: Path | None = None) -> Path:
    """A fresh, private folder for one run's artifacts, named by time and label."""
    base = private_dir(parent or state_dir() / "runs")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.mkdtemp(prefix=f"{stamp}-{label}-", dir=base))


def new_socket_dir() -> Path:
    """A short private folder for unix sockets (paths must stay under 108 bytes)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and Path(runtime).is_dir() else Path(tempfile.gettempdir())
    return Path(tempfile.mkdtemp(prefix="hil-", dir=base))


@contextlib.contextmanager
def cache_lock(lock_file: Path, console: Any = None, waiting: str = "") -> Iterator[None]:
    """One maker at a time for a cached artifact (parallel test workers all ask for it at once).

    Says `waiting` on `console` (a rich Console) while another process holds the lock.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with console.status(waiting) if console is not None and waiting else contextlib.nullcontext():
                fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
