"""Snapshots of a booted machine: save once per machine spec, restore in well under a second.

The state is saved by migrating to a file (`migrate exec:cat > FILE`; QEMU 7.2 has no `file:` URI) and
restored with `-incoming "exec:cat FILE"`. A booted disk's overlay is frozen beside the state and each
restore gets a new overlay over the frozen one, so the base image is never written and the disk matches
the memory. Devices QEMU cannot migrate (NVMe) are left out of the saved machine, only their PCIe root
ports exist, and the session hot-adds them after a save or a restore.

A snapshot is keyed by everything that shapes the saved state: the QEMU command line with per-run paths
and ports taken out, the digests of every boot file, QEMU's version, hil's version and the guest profile.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hil import __version__
from hil.cache import CacheArea
from hil.errors import InfraError
from hil.qemu.qmp import QmpCommandError, QmpSession
from hil.qemu.spec import MachineSpec, RunPaths

FORMAT_VERSION = 1
STATE_NAME = "vmstate"
DISK_NAME = "disk.qcow2"
META_NAME = "snapshot.json"
SAVE_TIMEOUT = 120.0
CACHE_LIMIT_ENV = "HIL_SNAPSHOT_CACHE_MB"
DEFAULT_CACHE_LIMIT_MB = 8192
_PLACEHOLDER_PATHS = RunPaths(Path("QMP"), Path("SERIAL"), Path("LOG"), Path("DISK"), Path("INITRD"))
_digest_cache: dict[tuple[str, int, int], str] = {}
# One lock per key: workers restoring or saving other machines never wait for each other.
SNAPSHOTS = CacheArea("snapshots", private=True, lock_per_key=True, limit_env=CACHE_LIMIT_ENV,
                      default_limit_mb=DEFAULT_CACHE_LIMIT_MB)


class SnapshotUnsupported(Exception):
    """QEMU refused to save this machine (a non-migratable device or backend); cold boots go on."""


@dataclass(frozen=True)
class Snapshot:
    key: str
    folder: Path
    meta: dict

    @property
    def state(self) -> Path:
        return self.folder / STATE_NAME

    @property
    def disk(self) -> Path | None:
        disk = self.folder / DISK_NAME
        return disk if disk.exists() else None

    def incoming_args(self) -> tuple[str, ...]:
        return ("-incoming", f"exec:cat {self.state}")


def snapshot_root() -> Path:
    return SNAPSHOTS.root


def snapshot_key(spec: MachineSpec, run_dir: Path, profile: str) -> str:
    """A key of every input that shapes the saved state, and nothing that changes from run to run."""
    argv = spec.argv(_PLACEHOLDER_PATHS)
    text = "\0".join(argv).replace(str(run_dir), "RUN")
    text = re.sub(r"hostfwd=(tcp|udp):127\.0\.0\.1:\d+-", r"hostfwd=\1:127.0.0.1:PORT-", text)
    inputs = {
        "format": FORMAT_VERSION,
        "hil": __version__,
        "qemu": _qemu_version(spec.qemu_binary),
        "profile": profile,
        "argv": text,
        "files": [_file_digest(path) for path in (spec.kernel, *spec.initrd, spec.disk) if path is not None],
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]


def find_snapshot(key: str) -> Snapshot | None:
    folder = SNAPSHOTS.path(key)
    try:
        meta = json.loads((folder / META_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not (folder / STATE_NAME).is_file():
        return None
    os.utime(folder)  # the folder's mtime marks its last use, for pruning
    return Snapshot(key, folder, meta)


def prune_snapshots(keep: str | None = None) -> list[str]:
    """Delete the least recently used snapshots beyond the cache limit; returns the keys removed."""
    return SNAPSHOTS.prune(keep)


def snapshot_lock(key: str) -> contextlib.AbstractContextManager[None]:
    """One maker per key: parallel workers wanting the same snapshot wait for the first to save it."""
    return SNAPSHOTS.lock(key)


def save_snapshot(qmp: QmpSession, key: str, disk_overlay: Path | None, meta: dict) -> Snapshot:
    """Stop the VM, migrate its state into the cache, freeze its disk overlay; the VM stays stopped."""
    with SNAPSHOTS.scratch(key) as scratch:
        qmp.execute("stop")
        started = time.monotonic()
        _migrate_to(qmp, scratch / STATE_NAME)
        if disk_overlay is not None:
            shutil.copyfile(disk_overlay, scratch / DISK_NAME)  # the VM is stopped: the overlay is consistent
        meta = {**meta, "key": key, "saved": time.time(), "save_seconds": round(time.monotonic() - started, 3)}
        (scratch / META_NAME).write_text(json.dumps(meta, indent=1, default=str) + "\n")
        final = SNAPSHOTS.publish(scratch, key, read_only=True)
    prune_snapshots(keep=key)
    return Snapshot(key, final, meta)


def _migrate_to(qmp: QmpSession, path: Path) -> None:
    try:
        qmp.execute("migrate", {"uri": f"exec:cat > {path}"})
    except QmpCommandError as err:
        raise SnapshotUnsupported(err.description) from None
    deadline = time.monotonic() + SAVE_TIMEOUT
    while time.monotonic() < deadline:
        status = qmp.execute("query-migrate")
        state = status.get("status")
        if state == "completed":
            return
        if state in ("failed", "cancelled"):
            raise SnapshotUnsupported(status.get("error-desc", f"migration {state}"))
        time.sleep(0.02)
    raise InfraError(f"saving the VM state did not finish within {SAVE_TIMEOUT:.0f} s")


def wait_incoming(qmp: QmpSession, timeout: float = 60.0) -> None:
    """After -incoming: wait until the state is loaded (the VM stays paused until `cont`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = qmp.execute("query-migrate")
        if status.get("status") == "completed":
            return
        if status.get("status") == "failed":
            raise InfraError(f"restoring the snapshot failed: {status.get('error-desc', 'unknown error')}")
        time.sleep(0.01)
    raise InfraError(f"restoring the snapshot did not finish within {timeout:.0f} s")


def _file_digest(path: Path) -> str:
    """sha256 of a boot file, remembered per (path, size, mtime) so repeated runs hash it once."""
    stat = Path(path).stat()
    cache_key = (str(path), stat.st_size, stat.st_mtime_ns)
    if cache_key not in _digest_cache:
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        _digest_cache[cache_key] = digest.hexdigest()
    return _digest_cache[cache_key]


@functools.cache
def _qemu_version(binary: str) -> str:
    try:
        return subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "missing"
