"""The reference guest: Linux from Debian packages with hil's busybox init (see hil/image/reference.py).

It is what every Redox result is compared against, so its stages mirror what a Redox boot goes through:
kernel up, userspace started, drivers loaded, network, services, ready, shell.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from hil.errors import UsageError
from hil.guest.console import Console
from hil.guest.profiles.base import GuestOptions, GuestProfile, SshAccess
from hil.guest.stages import Stage
from hil.image import reference as reference_image
from hil.qemu.spec import MachineSpec

READY_MARKER = "HIL-GUEST-READY"
KERNEL_APPEND = "console=ttyS0 nokaslr panic=-1"


class ReferenceProfile(GuestProfile):
    name = "reference"
    description = "Linux 6.1 from Debian packages, busybox init, dropbear; PVH boot"
    stages = (
        Stage("kernel", r"Linux version \S+", 30, "the kernel prints its banner"),
        Stage("userspace", r"Run /init as init process", 60, "the kernel starts hil's init"),
        Stage("mounts", r"hil-init: mounted", 15, "init mounts proc, sys, dev"),
        Stage("drivers", r"hil-init: modules loaded", 60, "nvme, xhci, usb-storage, e1000 modules loaded"),
        Stage("network", r"hil-init: network \S+", 30, "eth0 configured by DHCP (or none)"),
        Stage("sshd", r"hil-init: sshd \S+", 15, "dropbear started"),
        Stage("ready", rf"^{READY_MARKER}$", 60, "init's hooks ran; the ready marker"),
    )
    probe_binaries: ClassVar[dict[str, str]] = {"uring": "/usr/bin/hil-uring-probe"}
    progress_patterns = (r"^\[\s*\d+\.\d+\] ", r"^hil-init: ")
    crash_format = "linux"
    crash_patterns = (
        r"Kernel panic - not syncing",
        r"BUG: kernel NULL pointer dereference",
        r"general protection fault",
        r"Oops: \d+",
    )

    min_memory_mb = 128  # measured: 64 MiB hangs before the kernel's banner

    def check_options(self, options: GuestOptions) -> None:
        super().check_options(options)
        if options.image is not None:
            self._given_image(options.image)

    def machine_spec(self, options: GuestOptions) -> MachineSpec:
        image = self._image(options)
        append = f"{KERNEL_APPEND} {options.append}".strip()
        return MachineSpec(
            machine="q35",
            cpu="max",
            smp=options.smp or 2,
            memory_mb=options.memory_mb or 1024,
            accel=options.accel,
            kernel=image.vmlinux,
            initrd=(image.initramfs, *options.extra_initrd),
            append=append,
            # pvpanic makes QEMU send GUEST_PANICKED; -no-reboot turns the guest's panic=-1 reboot into QEMU
            # exiting, which hil sees at once.
            devices=(("-device", "pvpanic-pci"),),
            extra_args=("-no-reboot",),
            qemu_binary=options.qemu_binary,
        )

    def probe_kernel(self, options: GuestOptions) -> Path | None:
        image = self._image(options, required=False)
        return image.vmlinux if image else None

    def prepare_shell(self, console: Console, timeout: float) -> None:
        console.resync(timeout)
        console.run("stty cols 4096 -echoctl 2>/dev/null; unset HISTFILE", timeout)

    def after_restore(self, console: Console, timeout: float) -> None:
        # The shell was idle at the save; Ctrl-U clears any stray input, and the marker-delimited command
        # is the resync. The guest clock stopped while the state sat in the cache: set the host's time.
        console.send("\x15")
        console.run(f"date -s @{int(time.time())} >/dev/null", timeout)

    def ssh_access(self, options: GuestOptions) -> SshAccess | None:
        image = self._image(options)
        return SshAccess(user="root", key_file=image.ssh_key)

    def _image(self, options: GuestOptions, required: bool = True) -> reference_image.ReferenceImage | None:
        if options.image is not None:
            return self._given_image(options.image)
        image = reference_image.load_reference()
        if image is None and required:
            image = reference_image.build_reference()  # first use on this machine: build it, with progress
        return image

    def _given_image(self, path: Path) -> reference_image.ReferenceImage:
        if not path.is_dir():
            raise UsageError(f"--image {path}: the reference guest takes a folder made by `hil image reference` "
                             "(with manifest.json, vmlinux, initramfs)")  # fmt: skip
        image = reference_image.load_reference_from(path)
        if image is None:
            raise UsageError(f"--image {path}: not a complete reference guest (manifest.json missing?)")
        return image
