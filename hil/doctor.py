"""`hil doctor`: is this host ready to run hil? QEMU, the accelerator, cached images, a writable cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from rich.console import Console as Terminal
from rich.text import Text

from hil.guest.profiles import DEFAULT_GUEST, GuestOptions, get_profile
from hil.image.fetch import list_cached
from hil.image.reference import load_reference
from hil.paths import cache_dir, state_dir
from hil.qemu.accel import choose_accel
from hil.qemu.snapshot import snapshot_root
from hil.reports.terminal import listing


def doctor_command(terminal: Terminal) -> int:
    checks = _checks()
    rows = [("[green]ok[/]" if ok else "[red]!![/]", label, Text(detail)) for label, ok, detail in checks]
    terminal.print(listing(rows, indent=0))
    return 0 if all(ok for _, ok, _ in checks) else 3


def _checks() -> list[tuple[str, bool, str]]:
    results = [_qemu(), _tool("qemu-img", "qemu-utils"), _tool("depmod", "kmod"), _tool("apt-get", "apt")]
    results += [_writable("cache", cache_dir()), _writable("state", state_dir())]
    results += [_reference(), _redox_images(), _snapshots(), _accel()]
    return results


def _redox_images() -> tuple[str, bool, str]:
    images = list_cached()
    if not images:
        return "Redox images", True, "none cached (`hil image fetch`, or assemble with `hil image assemble`)"
    return "Redox images", True, ", ".join(f"{i.release or 'daily'} {i.variant}" for i in images[:4])


def _snapshots() -> tuple[str, bool, str]:
    root = snapshot_root()
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")] if root.is_dir() else []
    size = sum(f.stat().st_size for folder in folders for f in folder.iterdir())
    return "snapshots", True, f"{len(folders)} in {root} ({size >> 20} MiB)"


def _qemu() -> tuple[str, bool, str]:
    path = shutil.which("qemu-system-x86_64")
    if not path:
        return "QEMU", False, "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout.splitlines()
    return "QEMU", True, f"{path}: {version[0] if version else '?'}"


def _tool(name: str, package: str) -> tuple[str, bool, str]:
    path = shutil.which(name)
    return name, path is not None, path or f"not found: apt-get install {package}"


def _writable(label: str, folder: os.PathLike[str]) -> tuple[str, bool, str]:
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        return f"{label} folder", False, f"{folder}: {err}"
    return f"{label} folder", True, str(folder)


def _reference() -> tuple[str, bool, str]:
    image = load_reference()
    if image is None:
        return "reference guest", False, "not built: run `hil image reference`"
    return "reference guest", True, f"{image.root} (kernel {image.kernel_version})"


def _accel() -> tuple[str, bool, str]:
    choice = choose_accel("auto", get_profile(DEFAULT_GUEST).kvm_probe(GuestOptions()))
    return "accelerator", True, choice.reason
