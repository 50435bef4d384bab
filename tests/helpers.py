"""Small helpers shared by tests."""

from __future__ import annotations

import hashlib
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
