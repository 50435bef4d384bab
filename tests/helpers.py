"""Small helpers shared by tests."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from hil.image.cpio import NewcWriter


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def init_hook_overlay(path: Path, name: str, script: str) -> Path:
    """A cpio laid over the reference initramfs that adds one /etc/hil.d hook run before the ready marker."""
    archive = NewcWriter()
    archive.add_file(f"/etc/hil.d/{name}", ("#!/bin/sh\n" + script).encode(), mode=0o755)
    path.write_bytes(archive.to_bytes())
    return path


def process_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0]
        except (FileNotFoundError, IndexError):
            return True
        if state in "ZX":
            return True
        time.sleep(0.1)
    return False
