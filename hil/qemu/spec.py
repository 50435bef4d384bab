"""A machine spec: everything that decides how QEMU is started, turned into an argv.

The spec is declarative and knows nothing of run folders; `argv()` receives the per-run paths (sockets,
logs, the disk overlay) so the same spec can be launched many times side by side.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class RunPaths:
    """The files one launch of a machine uses: sockets in a short private folder, logs in the run folder."""

    qmp_socket: Path
    serial_socket: Path
    serial_log: Path  # every byte the guest sent, as hil read it from the socket
    disk_overlay: Path | None = None
    initrd: Path | None = None
    # QEMU's own log of the serial port (chardev logfile=), when hil keeps one apart from serial_log: it goes
    # on after hil disconnects (a kept VM), but QEMU 7.2 writes bytes twice when a socket write is partial.
    qemu_serial_log: Path | None = None

    @property
    def chardev_log(self) -> Path:
        return self.qemu_serial_log or self.serial_log


@dataclass(frozen=True)
class MachineSpec:
    """How to build the VM: machine type, CPUs, memory, accelerator, what to boot, devices, extras."""

    machine: str = "q35"
    cpu: str | None = None
    smp: int = 2
    memory_mb: int = 1024
    accel: str = "tcg"
    kernel: Path | None = None
    initrd: tuple[Path, ...] = ()
    append: str = ""
    disk: Path | None = None
    disk_format: str = "raw"
    devices: tuple[tuple[str, ...], ...] = ()
    extra_args: tuple[str, ...] = ()
    qemu_binary: str = "qemu-system-x86_64"

    def with_changes(self, **changes: object) -> MachineSpec:
        return replace(self, **changes)

    def boots_kernel(self) -> bool:
        return self.kernel is not None

    def digest(self) -> str:
        """A stable key of every field, for caches (snapshots) that depend on the spec."""
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def argv(self, paths: RunPaths) -> list[str]:
        """The full QEMU command line; the VM starts paused (-S) so hil sees every console byte."""
        argv = [self.qemu_binary, *self._base_args(), *self._boot_args(paths)]
        argv += _monitor_and_serial_args(paths)
        for group in self.devices:
            argv += list(group)
        argv += list(self.extra_args)
        return argv

    def _base_args(self) -> list[str]:
        args = ["-machine", self.machine, "-accel", self.accel, "-smp", str(self.smp), "-m", str(self.memory_mb)]
        if self.cpu:
            args += ["-cpu", self.cpu]
        # No default devices, no display: everything the guest sees is listed explicitly.
        args += ["-nodefaults", "-display", "none", "-vga", "none", "-no-user-config", "-S"]
        return args

    def _boot_args(self, paths: RunPaths) -> list[str]:
        args: list[str] = []
        if self.kernel:
            args += ["-kernel", str(self.kernel)]
            if paths.initrd:
                args += ["-initrd", str(paths.initrd)]
            if self.append:
                args += ["-append", self.append]
        if self.disk:
            if paths.disk_overlay is None:
                raise ValueError("a disk spec needs a per-run overlay path")
            args += [
                "-drive",
                f"file={paths.disk_overlay},format=qcow2,if=none,id=hil-disk0",
                "-device",
                "virtio-blk-pci,drive=hil-disk0,bootindex=0" if self.kernel else "ide-hd,drive=hil-disk0,bootindex=0",
            ]
        return args


def _monitor_and_serial_args(paths: RunPaths) -> list[str]:
    # The serial chardev logs what it sends to a file from the first byte, whoever is connected.
    serial = (
        f"socket,id=hil-serial0,path={paths.serial_socket},server=on,wait=off,logfile={paths.chardev_log},logappend=off"
    )
    return [
        "-chardev",
        f"socket,id=hil-qmp,path={paths.qmp_socket},server=on,wait=off",
        "-mon",
        "chardev=hil-qmp,mode=control",
        "-chardev",
        serial,
        "-serial",
        "chardev:hil-serial0",
    ]
