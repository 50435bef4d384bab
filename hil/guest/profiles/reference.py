"""The reference guest: Linux from Debian packages with hil's busybox init (see hil/image/reference.py).

It is what every Redox result is compared against, so its stages mirror what a Redox boot goes through:
kernel up, userspace started, drivers loaded, network, services, ready, shell.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from hil.devices.base import Device
from hil.devices.net import E1000, GUEST_ADDRESS
from hil.devices.storage import Nvme, UsbStorage
from hil.devices.usb import UsbInput, Xhci
from hil.errors import UsageError
from hil.guest.console import Console
from hil.guest.profiles.base import DeviceChecks, GuestCheck, GuestOptions, GuestProfile, SshAccess
from hil.guest.stages import Stage
from hil.image import reference as reference_image
from hil.qemu.accel import KvmProbe
from hil.qemu.spec import MachineSpec

READY_MARKER = "HIL-GUEST-READY"
KERNEL_APPEND = "console=ttyS0 nokaslr panic=-1"


def _nvme(device: Nvme) -> GuestCheck:
    return GuestCheck(
        f"NVMe namespace with serial {device.serial}",
        # builtins only (read, echo, a glob): under TCG every fork costs milliseconds
        command="for d in /sys/class/nvme/nvme*; do read -r s < $d/serial && echo $s; done; echo /dev/nvme*n1",
        output_pattern=rf"{device.serial}[\s\S]*/dev/nvme\d+n1",
        appears=f"[ -e /dev/nvme{device.number}n1 ]",  # a shell builtin: each try costs no fork
    )


def _usb_storage(device: UsbStorage) -> GuestCheck:
    return GuestCheck(
        f"USB disk with serial {device.serial} as /dev/sdX",
        command="cat /sys/bus/usb/devices/*/serial 2>/dev/null; "
        "for d in /sys/block/sd*; do readlink -f $d | grep -q /usb && echo /dev/${d##*/}; done",
        output_pattern=rf"{device.serial}[\s\S]*/dev/sd[a-z]+",
    )


def _xhci(device: Xhci) -> GuestCheck:
    return GuestCheck(
        "an xHCI host controller bound to xhci_hcd",
        command="ls /sys/bus/pci/drivers/xhci_hcd/ | grep :",
        output_pattern=r"\d{4}:\w\w:\w\w\.\d",
    )


def _usb_input(device: UsbInput) -> GuestCheck:
    return GuestCheck(device.product, command="cat /sys/bus/usb/devices/*/product", output_pattern=device.product)


def _e1000(device: E1000) -> GuestCheck:
    return GuestCheck(
        "eth0 driven by e1000 with a DHCP address",
        command="readlink /sys/class/net/eth0/device/driver; ip -4 addr show eth0",
        output_pattern=rf"/e1000\n[\s\S]*inet {GUEST_ADDRESS.replace('.', '[.]')}/",
    )


DEVICE_CHECKS: DeviceChecks = {"nvme": _nvme, "usb-storage": _usb_storage, "xhci": _xhci, "usb-kbd": _usb_input,
                               "usb-tablet": _usb_input, "e1000": _e1000}  # fmt: skip


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
    log_sign = r"Linux version \S+|Kernel panic - not syncing|^\s*(?:\[\s*\d+\.\d+\]\s*)?(?:BUG: |Oops: |Call Trace:)"
    device_checks: ClassVar[DeviceChecks] = DEVICE_CHECKS
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
        for extra in self._extras(options):
            reference_image.load_extra(extra)  # a UsageError naming the known extras

    def _extras(self, options: GuestOptions) -> tuple[str, ...]:
        """Extras baked into the image (own option `extras`, from a scenario's [machine] image_extras)."""
        return tuple(options.own.get("extras") or ())

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

    def kvm_probe(self, options: GuestOptions) -> KvmProbe | None:
        image = self._image(options, required=False)
        # With no root filesystem the kernel panics at once: reaching that panic means it booted.
        return KvmProbe(image.vmlinux, b"VFS: Unable to mount root", "console=ttyS0 panic=-1") if image else None

    def device_path(self, device: Device) -> str | None:
        # Linux names NVMe controllers in probe order, which is the order of the scenario's NVMe devices.
        return f"/dev/nvme{device.number}n1" if isinstance(device, Nvme) else None

    def prepare_shell(self, console: Console, timeout: float) -> None:
        console.resync(timeout)
        console.run("stty cols 4096 -echoctl 2>/dev/null; unset HISTFILE", timeout)

    def after_restore(self, console: Console, timeout: float, then: str | None = None) -> str:
        # The shell was idle at the save; Ctrl-U clears any stray input, and the marker-delimited command
        # is the resync. The guest clock stopped while the state sat in the cache: set the host's time.
        console.send("\x15")
        clock = f"date -s @{int(time.time())} >/dev/null"
        return console.run(f"{clock}; {then}" if then else clock, timeout).output

    def cpus_online(self, console: Console, timeout: float) -> int | None:
        done = console.run("grep -c ^processor /proc/cpuinfo", timeout)  # one entry per online CPU
        text = done.output.strip()
        return int(text) if done.ok and text.isdigit() else None

    def ssh_access(self, options: GuestOptions) -> SshAccess | None:
        image = self._image(options)
        return SshAccess(user="root", key_file=image.ssh_key)

    def _image(self, options: GuestOptions, required: bool = True) -> reference_image.ReferenceImage | None:
        if options.image is not None:
            return self._given_image(options.image)
        extras = self._extras(options)
        if extras:  # built once per set of extras (tokio's examples take minutes the first time)
            return reference_image.build_reference(extras=extras) if required else reference_image.load_reference()
        image = reference_image.load_reference()
        if image is None and required:
            image = reference_image.build_reference()  # first use on this machine: build it, with progress
        return image

    def _given_image(self, path: Path) -> reference_image.ReferenceImage:
        if not path.is_dir():
            raise UsageError(f"--image {path}: is not a folder. Fix: give a folder made by `hil image reference` "
                             "(with manifest.json, vmlinux, initramfs)")  # fmt: skip
        image = reference_image.load_reference_from(path)
        if image is None:
            raise UsageError(f"--image {path}: not a complete reference guest (no valid manifest.json). "
                             "Fix: give a folder made by `hil image reference`")
        return image
