"""Writing files so that a reader (another run, a crashed hil's successor) never sees half of one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_output(path: Path, *, durable: bool = False, mode: int | None = None) -> Iterator[Path]:
    """A new temporary file beside `path` for the block to fill (by hand, or a compiler's -o), renamed over
    `path` in one step when the block ends; deleted instead when it raises.

    `durable` also fsyncs, for files whose loss after a power cut would cost a rebuild (caches). `mode` is
    set before the rename (0o444 read-only, 0o755 a program); without it the file keeps mkstemp's 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if durable:
            _fsync(temporary)
        if mode is not None:
            temporary.chmod(mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes | str, *, durable: bool = False, mode: int | None = None) -> Path:
    """Write `data` to `path` through a temporary file and a rename (see atomic_output)."""
    payload = data.encode() if isinstance(data, str) else data
    with atomic_output(path, durable=durable, mode=mode) as temporary:
        temporary.write_bytes(payload)
    return path


def atomic_write_json(path: Path, document: Any, **options: Any) -> Path:
    return atomic_write(path, json.dumps(document, indent=2, default=str) + "\n", **options)


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
