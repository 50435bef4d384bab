"""The records of VMs left running by `hil run --keep` (kept.json and an index of them), and whether each
VM still runs: written when a machine is detached, read by `hil console`, `hil exec`, `hil ssh`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from hil.errors import UsageError
from hil.paths import private_dir, state_dir
from hil.store import atomic_write


def kept_index() -> Path:
    return private_dir(state_dir() / "kept")


def register_kept(run_dir: Path) -> None:
    """Remember a kept run so `hil console` finds it without a path."""
    # Named by the whole path: two runs' folders of the same name (`--report-dir run`) are two entries.
    link = kept_index() / hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    link.write_text(str(run_dir.resolve()) + "\n")


def update_kept(run_dir: Path, info: dict[str, object]) -> None:
    """Add what the machine layer cannot know (guest, SSH login) to a kept run's record."""
    record_file = run_dir / "kept.json"
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        atomic_write(record_file, json.dumps({**record, **info}, indent=1) + "\n")


def load_kept(run_dir: Path | None) -> dict[str, object]:
    """A kept run's record; with no folder, the newest kept VM still running (never a dead one)."""
    if run_dir is None:
        running = kept_running()
        if not running:
            raise UsageError("no kept VM is running. Fix: start one with `hil run SCENARIO --keep`")
        return running[-1]
    record_file = run_dir / "kept.json"
    if not record_file.is_file():
        raise UsageError(f"{run_dir} has no kept.json: that run was not started with --keep")
    record = json.loads(record_file.read_text())
    if not alive(record.get("pid")):
        raise UsageError(f"the VM of {run_dir} is no longer running (pid {record.get('pid')})")
    return record


def kept_running() -> list[dict[str, object]]:
    """The records of kept VMs still running, oldest first; entries of VMs gone are forgotten."""
    records: dict[str, tuple[float, dict[str, object]]] = {}
    for entry in kept_index().iterdir():
        try:
            record = load_kept(Path(entry.read_text().strip()))
            records[str(record["run_dir"])] = (entry.stat().st_mtime, record)
        except (UsageError, OSError, ValueError, KeyError):
            entry.unlink(missing_ok=True)
    return [record for _, record in sorted(records.values(), key=lambda pair: pair[0])]


def alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
