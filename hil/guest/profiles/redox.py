"""Redox guests: `redox` (full userspace to the ion shell) and `redox-kernel` (the kernel alone with an initfs).

Stage patterns come from the Redox kernel's log lines (seen on real boots here), the initfs daemons'
messages and getty's bold login prompt (from Redox sources; wording can change between versions). The
BIOS bootloader waits for a resolution key whenever a VGA device exists, so every Redox machine runs with
`-vga none`, as redoxer does.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hil.devices.net import E1000
from hil.devices.storage import Nvme, UsbStorage
from hil.devices.usb import USB_IDS, Xhci
from hil.errors import UsageError
from hil.guest.console import Console
from hil.guest.profiles.base import DeviceChecks, GuestCheck, GuestOptions, GuestProfile, must_be_file
from hil.guest.shell import ShellDialect, WrappedCommand, markers
from hil.guest.stages import Stage
from hil.image.redox.assemble import assemble, default_packages, read_image_file
from hil.image.redox.disk_cache import assembled_disk
from hil.image.redox.repo import check_packages
from hil.initfs_probe.build import build_initfs_probe
from hil.initfs_probe.spec import RUN_VALUES_FW_CFG, E1000Target, NvmeTarget, XhciTarget, run_values_text
from hil.paths import cache_dir
from hil.qemu.accel import KvmProbe
from hil.qemu.spec import MachineSpec
from hil.results import Verdict
from hil.store import atomic_write

PACKAGES_ENV = "HIL_REDOX_PKGS"
KERNEL_IMAGE_MIB = 64

# The kernel logs `module::path:LEVEL -- message` at whatever level it chose (`kernel:DEBUG -- Env: ...`,
# `kernel::startup:INFO -- Env: ...`); newer kernels log "Finished initializing devices" at debug level only,
# so that stage may be missed (the walker marks it so when a later one shows).
KERNEL_LOG = r"kernel(?:::\S+)?:(?:TRACE|DEBUG|INFO|WARN|ERROR) -- "
# Userspace daemons log through redox_log: `2026-01-01T00-00-11.187Z [@pcid:252 INFO] PCI ...`, with the daemon's
# name before the @ when it names itself (`[orbital@orbital::config:114 ERROR]`), or a source path
# (`[src/initnsmgr.rs:169 WARN]`). Time stamp and tag are optional: older builds printed the message alone.
USER_TAG = r"\[(?:[\w-]*@[\w:-]+|[\w/.-]+\.rs):\d+\s+\w+\]"
# The drivers pcid-spawner starts (their redox_log tags show them at work when the spawn line is not logged).
PCI_DRIVERS = (r"xhcid|nvmed|e1000d|ahcid|ided|rtl8168d|rtl8139d|ixgbed|ihdad|ac97d|sb16d|bgad|virtio-\w+d|"
               r"usbscsid|usbhidd")
TIME_STAMP = r"(?:\d{4}-\d\d-\d\dT\S+Z\s+)?"
USER_LOG = rf"{TIME_STAMP}(?:{USER_TAG}\s+)?"

KERNEL_STAGES = (
    Stage("kernel", r"kernel::log:\w+ -- Logger initialized", 60, "the kernel's logger is up"),
    Stage("start", r"Redox OS starting", 15, "the kernel starts"),
    Stage("memory", r":\w+ -- Memory: \d+ MB", 15, "memory map read"),
    Stage("devices", r"Finished initializing devices", 30, "timers, interrupts, ACPI"),
    # `Env: Ok("RSDP_ADDR=...")`, not the start code's `Env: 204000:204087` (where it lies) that comes earlier.
    Stage("env", rf'{KERNEL_LOG}Env: (?:Ok\(|"?RSDP)', 15, "the bootloader's environment (RedoxFS block, UUID)"),
    # Newer kernels log the entry point at debug level: then the first userspace log line shows the hand-off.
    Stage("userspace", rf"Bootstrap entry point: [0-9a-f]+|^{TIME_STAMP}{USER_TAG}", 30,
          "the initfs bootstrap starts"),
)

# A kernel panic ends the run (`KERNEL PANIC: panicked at ...`; before 2019 `PANIC:` with FILE:/LINE: lines).
REDOX_CRASH_PATTERNS = (r"KERNEL PANIC", r"^kernel::panic", r"^\s*PANIC: ")
# An exception dump ends with this line (the fault name, registers and backtrace come first), so matching
# it keeps the whole dump. A user program's fault does not stop Redox (it goes on to `redox login:`): it is a
# fault event, unless the faulting program is one the system cannot go on without (FATAL_PROCESSES) or the
# fault was in the kernel.
REDOX_FAULT_PATTERNS = (r"UNHANDLED EXCEPTION, CPU #?\d+", r"SIGNAL \d+, CPU \d+, PID ContextId\(",
                        r"^\s*thread '[^']*'(?: \(\d+\))? panicked at ")  # a program's Rust panic
FATAL_PROCESSES = ("bootstrap", "init")


# What Redox's drivers show when they work: nvmed and usbscsid serve their disks as disk.* schemes,
# xhcid and e1000d log through redox_log. (From Redox sources: no full userspace boots here.)
DEVICE_CHECKS: DeviceChecks = {
    "nvme": lambda device: GuestCheck("nvmed driver and its disk scheme", command="ls /scheme",
                                      output_pattern=r"disk\.pci-\S+-nvme"),
    "usb-storage": lambda device: GuestCheck("usbscsid and its disk scheme", command="ls /scheme",
                                             output_pattern=r"disk\.usb"),
    "xhci": lambda device: GuestCheck("xhcid started", console_patterns=(r"XHCI",)),
    "e1000": lambda device: GuestCheck("e1000d started and its network scheme", console_patterns=(r"E1000",)),
}  # fmt: skip


@dataclass(frozen=True)
class RedoxOptions:
    """What Redox guests take beyond the common options (GuestOptions.own)."""

    packages: str | None = None  # a package folder or URL to assemble the disk from (else $HIL_REDOX_PKGS)
    kernel: Path | None = None  # a local kernel to put into the assembled disk
    initfs: Path | None = None  # a local initfs to put into it
    initfs_probe: str | None = None  # which variant of hil's initfs probe redox-kernel boots by default
    nvme: NvmeTarget | None = None  # the first NVMe controller at boot, for the probe's redox-nvme checks
    e1000: E1000Target | None = None  # the first e1000 at boot, for the probe's redox-e1000 checks
    xhci: XhciTarget | None = None  # the first xHCI at boot and its devices, for the probe's redox-xhci checks

    @classmethod
    def of(cls, options: GuestOptions) -> RedoxOptions:
        own = options.own
        packages = own.get("packages") or os.environ.get(PACKAGES_ENV) or None
        devices = own.get("devices") or ()
        requests = own.get("console_requests") or {}
        return cls(packages, own.get("kernel"), own.get("initfs"), own.get("initfs_probe"), _nvme_target(devices),
                   _e1000_target(devices), _xhci_target(devices, requests))


def _nvme_target(devices: Iterable[object]) -> NvmeTarget | None:
    """What the probe checks Identify against: serial and size as hil configures the controller."""
    for device in devices:
        if isinstance(device, Nvme):
            return NvmeTarget(device.serial, device.size_mib << 20, device.seed)
    return None


def _e1000_target(devices: Iterable[object]) -> E1000Target | None:
    """What the probe's e1000 cases use: the MAC hil gave QEMU, the host listeners, the first UDP forward."""
    for device in devices:
        if isinstance(device, E1000):
            echo = next((f.guest_port for f in device.forwards if f.proto == "udp"), 7001)
            return E1000Target(device.mac, device.listeners.get("udp", 0), device.listeners.get("tcp", 0), echo)
    return None


def _xhci_target(devices: Iterable[object], requests: Mapping[str, str]) -> XhciTarget | None:
    """The first xHCI's model, the USB devices attached to it at boot (their ids as QEMU emulates them), its
    usb-storage's seed, and whether the console_probe step unplugs (replugs) that usb-storage on request."""
    devices = tuple(devices)
    controllers = [d for d in devices if isinstance(d, Xhci)]
    if not controllers:
        return None
    first = controllers[0]
    attached = [d for d in devices if getattr(d, "controller", None) == first.id]
    storage = next((d for d in attached if isinstance(d, UsbStorage)), None)
    ids = tuple(USB_IDS[d.kind] for d in attached if d.kind in USB_IDS)
    if storage is None:
        return XhciTarget(first.model, len(attached), ids)
    return XhciTarget(first.model, len(attached), ids, storage.seed, unplug=requests.get("unplug") == storage.id,
                      replug=requests.get("replug") == storage.id)


class IonShell(ShellDialect):
    """ion: no eval, so markers are split by ion's own string concatenation of two quoted halves."""

    name = "ion"
    typed_begin = re.compile(r"echo 'HB''[0-9a-f]{12}'; ")
    typed_end = re.compile(r"; echo 'HE''[0-9a-f]{12}:'\$\?$")

    def unwrap_command(self, quoted: str) -> str:
        return quoted  # ion gets the command as it is, unquoted

    def resize_line(self, rows: int, columns: int) -> str | None:
        return None  # Redox's console has no stty

    def wrap(self, command: str) -> WrappedCommand:
        token = self.new_token()
        return markers(f"echo 'HB''{token}'; {command}; echo 'HE''{token}:'$?", f"HB{token}", f"HE{token}")


class RedoxKernelProfile(GuestProfile):
    name = "redox-kernel"
    default_nic = False  # no network stack and no SSH: only a scenario's own e1000
    description = "a real Redox kernel with an initfs hil provides; stages up to the userspace hand-off"
    stages = KERNEL_STAGES
    crash_patterns = REDOX_CRASH_PATTERNS
    fault_patterns = REDOX_FAULT_PATTERNS
    fatal_processes = FATAL_PROCESSES
    progress_patterns = (rf"^{KERNEL_LOG}",)
    crash_format = "redox"
    # Its own lines and crash texts of every era (2015's `INT E: Page fault`, 2017's `SIGNAL 11, ... ContextId(`).
    log_sign = (rf"^{KERNEL_LOG}|Redox OS|UNHANDLED EXCEPTION|KERNEL PANIC|^\s*PANIC: |ContextId\(|"
                r"^\s*(?:Page|Protection) fault|INT [0-9A-F]{1,2}: \w+ fault|Invalid opcode fault|\bredox\b")
    device_checks: ClassVar[DeviceChecks] = DEVICE_CHECKS
    idle_symbols = ("kernel::run_userspace", "kernel::kmain", "kernel::kmain_ap", "interrupt::halt", "enable_and_halt")
    debug_exit_verdicts: ClassVar[dict[int, Verdict] | None] = {51: Verdict.PASS, 53: Verdict.FAIL}

    min_memory_mb = 32  # measured: kernel-smoke passes at 32 MiB

    def check_options(self, options: GuestOptions) -> None:
        super().check_options(options)
        redox = RedoxOptions.of(options)
        for flag, path in (("--kernel", redox.kernel), ("--initfs", redox.initfs)):
            if path is not None:
                must_be_file(flag, path)
        if options.image is not None:
            must_be_file("--image", options.image)
            return
        if not redox.packages:
            raise UsageError(f"guest {self.name} needs a disk. Fix: give --image IMG, or --packages DIR|URL "
                             f"(or set {PACKAGES_ENV}) to assemble one")  # fmt: skip
        check_packages(redox.packages, self.packages_needed(redox))

    def packages_needed(self, redox: RedoxOptions) -> list[str]:
        """What the run's disk is assembled from: hil's probe (or the user's initfs) stands in for base-initfs."""
        return [name for name in default_packages(redox.kernel, redox.initfs) if name != "base-initfs"]

    def machine_spec(self, options: GuestOptions) -> MachineSpec:
        image = self._image(options)
        return MachineSpec(
            machine="q35",
            cpu="max",
            smp=options.smp or 4,
            memory_mb=options.memory_mb or 2048,
            accel=options.accel,
            disk=image,
            disk_format="raw",
            # Guests that finish on their own leave through isa-debug-exit, like redoxer's daemon.
            extra_args=("-no-reboot", "-device", "isa-debug-exit", *_run_values_args(RedoxOptions.of(options))),
            qemu_binary=options.qemu_binary,
        )

    def kvm_probe(self, options: GuestOptions) -> KvmProbe | None:
        return None  # KVM is tested with the reference guest's Linux kernel (Redox fails there too)

    def kernel_symbols(self, options: GuestOptions) -> Path | None:
        """The booted kernel's ELF (Redox keeps its symbol table), for hang triage."""
        kernel = RedoxOptions.of(options).kernel
        if kernel is not None:
            return kernel
        if options.work_dir is None:
            return None
        target = options.work_dir / "kernel.elf"
        if not target.exists():
            try:
                atomic_write(target, read_image_file(self._image(options), "boot/kernel"))
            except Exception:  # symbols help triage; never a reason to fail the run
                return None
        return target

    def program_symbols(self, options: GuestOptions, process: str | None) -> Path | None:
        """The bootstrap's ELF: hil's probe keeps it beside its initfs (NAME.elf); a user's initfs may too."""
        if process != "bootstrap":
            return None
        initfs = self.default_initfs(RedoxOptions.of(options))
        elf = initfs.with_suffix(".elf") if initfs is not None else None
        return elf if elf is not None and elf.is_file() else None

    def prepare_shell(self, console: Console, timeout: float) -> None:
        """Nothing to prepare: after the hand-off the initfs runs on its own, without a shell."""

    def after_restore(self, console: Console, timeout: float, then: str | None = None) -> str:
        """No shell to resynchronise (nor to run `then` in)."""
        return ""

    def _image(self, options: GuestOptions) -> Path:
        """The given disk, else one assembled for the run (check_options has vouched for the inputs)."""
        self.check_options(options)
        if options.image is not None:
            return options.image
        redox = RedoxOptions.of(options)
        assert redox.packages is not None  # check_options said so
        return _assemble_for_run(redox, options.work_dir, KERNEL_IMAGE_MIB, self.default_initfs(redox))

    def default_initfs(self, redox: RedoxOptions) -> Path | None:
        """The user's initfs, else hil's freestanding probe (built once per variant into the cache)."""
        if redox.initfs is not None:
            return redox.initfs
        return build_initfs_probe(cache_dir() / "initfs-probe", redox.initfs_probe or "kernel-smoke", nvme=redox.nvme,
                                  e1000=redox.e1000, xhci=redox.xhci)


class RedoxProfile(RedoxKernelProfile):
    name = "redox"
    default_nic = True  # smolnetd and the network stage
    description = "a full Redox image: kernel, initfs daemons and drivers, root RedoxFS, login, ion shell"
    stages = (
        *KERNEL_STAGES,
        Stage("pci", r"PCI SG-BS:DV\.F|\[[\w-]*@pcid\b", 60, "pcid enumerates PCI"),
        Stage("drivers", rf"pcid-spawner: spawn|\[[\w-]*@(?:{PCI_DRIVERS})\b", 60, "pcid-spawner starts the drivers"),
        # getty's prompt; an image that logs in by itself greets and gives ion's root prompt instead.
        Stage("login", r"redox login: |^Welcome to Redox OS!$", 120, "getty's login prompt on the serial console",
              whole_line=False),
    )
    shell = IonShell()
    # Userspace: redox_log's `[@crate:line LEVEL]` tags, pcid's listing, getty's prompt.
    log_sign = rf"redox login:|{USER_TAG}|pcid-spawner|PCI SG-BS:DV\.F|Welcome to Redox OS"
    probe_binaries: ClassVar[dict[str, str]] = {"uring": "hil-uring-probe"}
    # Every redox_log line is a daemon at work; unprefixed ones as older builds print them.
    progress_patterns = (*RedoxKernelProfile.progress_patterns, USER_TAG,
                         rf"^{USER_LOG}pcid-spawner: ", rf"^{USER_LOG}PCI ")  # fmt: skip

    def machine_spec(self, options: GuestOptions) -> MachineSpec:
        spec = super().machine_spec(options)
        # The Redox build system's machine: xHCI from NEC as its mk/qemu.mk uses.
        return spec.with_changes(devices=(*spec.devices, ("-device", "nec-usb-xhci,id=hil-xhci")))

    def prepare_shell(self, console: Console, timeout: float) -> None:
        console.sendline("root")
        console.expect([re.compile(r"password: ")], timeout)
        console.sendline("password")
        console.resync(timeout)

    def default_initfs(self, redox: RedoxOptions) -> Path | None:
        return redox.initfs  # the packages' base-initfs unless the user gives one

    def packages_needed(self, redox: RedoxOptions) -> list[str]:
        return default_packages(redox.kernel, redox.initfs)

    def after_restore(self, console: Console, timeout: float, then: str | None = None) -> str:
        console.resync(timeout)
        return console.run(then, timeout).output if then else ""


def _run_values_args(redox: RedoxOptions) -> tuple[str, ...]:
    """The fw_cfg item with what the probe needs that changes every run (the e1000's host ports): not built in,
    so the probe and the disk holding it are made once, not once per run."""
    values = redox.e1000.run_values() if redox.e1000 is not None else {}
    if not values:
        return ()
    # QEMU's option parser ends a value at ",": the text has none (digits, dots, "=" and ";").
    return ("-fw_cfg", f"name={RUN_VALUES_FW_CFG},string={run_values_text(values)}")


def _assemble_for_run(redox: RedoxOptions, work_dir: Path | None, size_mib: int, initfs: Path | None) -> Path:
    """The run's base image: a cached disk for these inputs, else one assembled into the run folder."""
    assert redox.packages is not None
    cached = assembled_disk(redox.packages, size_mib << 20, redox.kernel, initfs)
    if cached is not None:
        return cached
    if work_dir is None:
        raise UsageError("assembling a Redox image needs a run folder")
    out = work_dir / "redox-assembled.img"
    if not out.exists():
        assert redox.packages is not None
        assemble(packages=redox.packages, out=out, size=size_mib << 20, kernel=redox.kernel, initfs=initfs)
        out.chmod(0o444)
    return out
