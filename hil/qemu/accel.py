"""Choosing the accelerator: KVM only when a real boot works under it, else TCG, and say why.

Opening /dev/kvm proves little: on some hosts (nested, paravirtual KVM without vmx/svm) a boot sector runs
while Linux and Redox stop with "KVM internal error". So `auto` boots a real kernel under KVM and requires
it to print what its guest profile says a working boot prints (KvmProbe; the reference guest's kernel,
with no root filesystem, reaches its own root-mount panic). The answer is cached per host kernel, CPU
flags and QEMU version, since the probe costs seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hil.errors import UsageError
from hil.paths import cache_dir
from hil.store import atomic_write_json

PROBE_TIMEOUT = 10.0  # a working KVM boots a kernel to its first panic in under 2 s; TCG needs about 3 s
ACCELERATORS = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class AccelChoice:
    name: str
    reason: str


@dataclass(frozen=True)
class KvmProbe:
    """A boot that proves KVM works: `kernel` booted with `append` prints `success` on the serial port."""

    kernel: Path
    success: bytes
    append: str = ""


def choose_accel(requested: str, probe: KvmProbe | None, qemu_binary: str = "qemu-system-x86_64") -> AccelChoice:
    if requested not in ACCELERATORS:
        raise UsageError(f"unknown accelerator {requested!r}; use one of {', '.join(ACCELERATORS)}")
    if requested != "auto":
        return AccelChoice(requested, "requested")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return AccelChoice("tcg", "TCG: /dev/kvm is missing or not accessible")
    if probe is None:
        return AccelChoice("tcg", "TCG: no kernel to test KVM with (build the reference guest first)")
    if kvm_boots(probe, qemu_binary):
        return AccelChoice("kvm", "KVM: a test boot under KVM worked")
    return AccelChoice("tcg", "TCG: a test boot under KVM failed on this host (KVM present but unusable)")


def kvm_boots(probe: KvmProbe, qemu_binary: str) -> bool:
    """Cached: does the probe's kernel print what a working boot prints, under KVM?"""
    cache = cache_dir() / "accel" / f"{_host_key(qemu_binary)}.json"
    if cache.is_file():
        return bool(json.loads(cache.read_text())["kvm_works"])
    works = _probe_boot(probe, qemu_binary)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache, {"kvm_works": works, "kernel": str(probe.kernel)})  # parallel runs may probe too
    return works


def _probe_boot(probe: KvmProbe, qemu_binary: str) -> bool:
    argv = [
        qemu_binary, "-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults", "-display", "none",
        "-vga", "none", "-no-reboot", "-serial", "stdio", "-kernel", str(probe.kernel), "-append", probe.append,
    ]  # fmt: skip
    try:
        result = subprocess.run(argv, capture_output=True, timeout=PROBE_TIMEOUT, check=False)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return probe.success in result.stdout


def _host_key(qemu_binary: str) -> str:
    try:
        version = subprocess.run([qemu_binary, "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        version = "missing"
    # Whether KVM works is a property of the host and QEMU, not of the kernel used to find out.
    parts = [version, platform.release(), platform.machine(), _cpu_flags()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return ""
