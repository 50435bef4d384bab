"""The guest profile interface: how a guest boots, what its stages look like, how to get a shell.

A profile turns guest options into a machine spec, names its boot stages (patterns + budgets) and crash
patterns, and brings the console to a shell it can run commands in. Redox profiles implement the same
interface; nothing outside hil/guest/profiles knows a guest's messages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from hil.devices.base import Device
from hil.errors import UsageError
from hil.guest.console import Console
from hil.guest.shell import ShellDialect
from hil.guest.stages import Stage
from hil.qemu.accel import KvmProbe
from hil.qemu.spec import MachineSpec
from hil.results import Verdict
from hil.triage.crash import CrashReport


@dataclass(frozen=True)
class GuestOptions:
    """What the user may override, whatever the guest."""

    image: Path | None = None
    smp: int | None = None
    memory_mb: int | None = None
    accel: str = "tcg"
    append: str = ""
    extra_initrd: tuple[Path, ...] = ()
    qemu_binary: str = "qemu-system-x86_64"
    # Options only some guests take, by name (Redox: packages, kernel, initfs, initfs_probe). Each profile
    # reads its own through a typed view and ignores the others, so one run set can pass --packages to a
    # Redox cell and a Linux cell alike.
    own: Mapping[str, Any] = field(default_factory=dict)
    # The run folder, for guests that prepare their image per run (set by the session).
    work_dir: Path | None = None


def must_be_file(flag: str, path: Path) -> None:
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise UsageError(f"{flag} {path}: {problem}. Fix: give the path of a file")


@dataclass(frozen=True)
class GuestCheck:
    """How a guest proves it sees a device: a shell command whose output matches, or console lines."""

    description: str
    command: str | None = None
    output_pattern: str | None = None
    console_patterns: tuple[str, ...] = ()
    # A shell condition true once the device shows: after a hot-add the guest waits for it by itself.
    appears: str | None = None

    def waiting_command(self, seconds: float) -> str | None:
        """`command`, after the guest has waited up to `seconds` for `appears` (POSIX sh, 10 ms steps)."""
        if self.appears is None or self.command is None:
            return self.command
        steps = max(1, round(seconds * 100))
        wait = f"i=0; until {self.appears}; do i=$((i+1)); [ $i -ge {steps} ] && break; sleep 0.01; done"
        return f"{wait}; {self.command}"


# A device kind -> what the guest shows when such a device works (each profile has its own table).
DeviceChecks = Mapping[str, Callable[[Any], GuestCheck]]


@dataclass(frozen=True)
class SshAccess:
    user: str
    key_file: Path
    guest_port: int = 22


class GuestProfile(ABC):
    name: str = ""
    description: str = ""
    stages: tuple[Stage, ...] = ()
    crash_patterns: tuple[str, ...] = ()  # lines that end a run as a crash (a kernel panic)
    # Lines that end a program's fault report: the guest goes on, the fault is an event of the run (a crash
    # unless the scenario allows it), but a fault of one of `fatal_processes`, or in the kernel, ends it.
    fault_patterns: tuple[str, ...] = ()
    fatal_processes: tuple[str, ...] = ()
    shell: ShellDialect = ShellDialect()
    probe_binaries: ClassVar[dict[str, str]] = {}
    # Console lines that show progress: waits end after their budget without one (probe heartbeats always count).
    progress_patterns: tuple[str, ...] = ()
    # Functions a vCPU is in when the kernel idles (hang triage); empty: hil.triage.classify's defaults.
    idle_symbols: tuple[str, ...] = ()
    # Which crash parser reads this guest's dumps: "linux" | "redox" (None: try all).
    crash_format: str | None = None
    # isa-debug-exit QEMU statuses -> verdicts (None: hil's 51 pass / 53 fail).
    debug_exit_verdicts: ClassVar[dict[int, Verdict] | None] = None
    # A pattern only this guest's logs show, to tell which guest printed a saved log (`hil triage`).
    log_sign: str = ""
    # What this guest shows for each kind of device it has drivers for (GuestProfile.device_check).
    device_checks: ClassVar[DeviceChecks] = {}
    # The least memory this guest boots in (below it: a hang before the first line, or QEMU refusing).
    min_memory_mb: int = 64
    # Whether hil gives the guest a NIC when the scenario has none (for SSH and the network stage). A guest
    # without either gets none: an unasked-for e1000 would answer a probe that looks for the scenario's own.
    default_nic: bool = True

    def fault_ends_run(self, report: CrashReport) -> bool:
        """A kernel panic, a fault in the kernel, or a fault of a program this guest cannot go on without (a
        program's own Rust panic names its program only by guess, so it never ends the run by itself)."""
        if report.kind == "kernel-panic" or report.mode == "kernel":
            return True
        return report.kind != "program-panic" and report.process in self.fatal_processes

    def check_options(self, options: GuestOptions) -> None:
        """Every mistake in `options` that can be seen without building or booting anything (UsageError)."""
        if options.memory_mb is not None and options.memory_mb < self.min_memory_mb:
            raise UsageError(f"memory {options.memory_mb} MiB: guest {self.name} needs at least {self.min_memory_mb} "
                             f"MiB. Fix: give --memory {self.min_memory_mb} or more")  # fmt: skip
        for path in options.extra_initrd:
            must_be_file("--initrd-overlay", path)

    @abstractmethod
    def machine_spec(self, options: GuestOptions) -> MachineSpec:
        """The machine this guest boots on, with its image resolved (building or failing clearly)."""

    @abstractmethod
    def kvm_probe(self, options: GuestOptions) -> KvmProbe | None:
        """A boot that shows KVM works on this host (None when this guest has no kernel to test it with)."""

    def prepare_shell(self, console: Console, timeout: float) -> None:
        """After the last stage: make the console a shell ready for `run` (login, terminal settings)."""
        console.resync(timeout)

    def after_restore(self, console: Console, timeout: float, then: str | None = None) -> str:
        """After a snapshot restore: a shell in a known state (and, where the guest allows, the right time).
        `then`, a command, runs in the same round trip where the guest allows; its output is returned."""
        console.resync(timeout)
        return console.run(then, timeout).output if then else ""

    def cpus_online(self, console: Console, timeout: float) -> int | None:
        """How many CPUs the running guest brought up, asked over its shell; None when it cannot say.
        Guests whose probes count CPUs themselves (a `cpus` metric) leave this alone."""
        return None

    def device_check(self, device: Device) -> GuestCheck | None:
        """What this guest shows when `device` works; None when the guest has no driver hil knows of."""
        make = self.device_checks.get(device.kind)
        return make(device) if make else None

    def device_path(self, device: Device) -> str | None:
        """Where programs in this guest reach `device` (a block device node); None: the probe finds it."""
        return None

    def probe_command(self, probe: str, device: Device | None, args: str) -> str:
        """The command line that runs guest probe `probe` on `device` (same flags on every guest)."""
        command = f"{self.probe_binaries[probe]}"
        path = self.device_path(device) if device else None
        if path:
            command += f" --device {path}"
        return f"{command} {args}".strip()

    def kernel_symbols(self, options: GuestOptions) -> Path | None:
        """A kernel ELF with a symbol table for hang triage (None: kallsyms over SSH where the guest has it)."""
        return None

    def program_symbols(self, options: GuestOptions, process: str | None) -> Path | None:
        """An ELF with symbols for the user program `process` (to name where a user-mode fault was), if any."""
        return None

    def ssh_access(self, options: GuestOptions) -> SshAccess | None:
        """How to log in over SSH, where the guest runs an SSH server."""
        return None
