"""Writing files so that a reader (another run, a crashed hil's successor) never sees half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes | str, *, durable: bool = False) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path` in one step.

    `durable` also fsyncs, for files whose loss after a power cut would cost a rebuild (caches).
    """
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(payload)
            if durable:
                stream.flush()
                os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: Path, document: Any, **options: Any) -> Path:
    return atomic_write(path, json.dumps(document, indent=2, default=str) + "\n", **options)
