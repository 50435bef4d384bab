"""Small helpers shared by tests."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from hil.image.cpio import NewcWriter

REDOX_PACKAGES = os.environ.get("HIL_REDOX_PKGS")
# Marks of a test that boots the real Redox kernel with hil's initfs probe under QEMU.
REDOX_KERNEL_MARKS = [
    pytest.mark.qemu,
    pytest.mark.slow,
    pytest.mark.skipif(
        not REDOX_PACKAGES,
        reason="set HIL_REDOX_PKGS to a Redox package folder (kernel.pkgar, bootloader.pkgar, ...)",
    ),
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="qemu-system-x86_64 is not installed"),
    pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed"),
]


# What every host harness of the probe's C shares: printf, and dump(), which prints bytes as one line of hex.
HARNESS_PREAMBLE = r"""
#include <stdio.h>
static void dump(const void *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        printf("%02x", ((const unsigned char *)p)[i]);
    printf("\n");
}
"""


def host_harness(work: Path, source: str, c_files: Sequence[Path], include: Path) -> list[str]:
    """Compile a C harness with the host's gcc against some of the probe's sources; its output lines."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    (work / "h.c").write_text(source)
    exe = work / "h"
    cmd = ["gcc", "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{include}", "-o", str(exe),
           str(work / "h.c"), *map(str, c_files)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines()


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


def git_in(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def commit_files(repo: Path, message: str, files: dict[str, str]) -> str:
    """Write `files` (relative paths) into `repo`, commit them all, return the new commit's hash."""
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git_in(repo, "add", "-A")
    git_in(repo, "-c", "user.name=dev", "-c", "user.email=dev@example.org", "commit", "-q", "-m", message)
    return git_in(repo, "rev-parse", "HEAD")


def run_bisect(
    repo: Path, good: str, bad: str, build: str, runs: int, log_dir: Path, run: list[str], capsys,
    extra: Sequence[str] = (),
) -> tuple:  # fmt: skip
    """`hil bisect` as a user types it: (exit code, what it printed, result event, signature, every event)."""
    from hil.cli import main as hil_main

    options = ["--build", build, "--runs", str(runs), "--timeout-factor", "0.25", "--log-dir", str(log_dir), *extra]
    code = hil_main(["bisect", "--repo", str(repo), "--good", good, "--bad", bad, *options, "--", *run])
    printed = capsys.readouterr().out
    with capsys.disabled():
        print("\n" + printed)
    events = [json.loads(line) for line in (log_dir / "bisect-log.jsonl").read_text().splitlines()]
    result = next(e for e in events if e["event"] == "result")
    signature = next(e["signature"] for e in events if e["event"] == "signature")
    return code, printed, result, signature, events
