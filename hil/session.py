"""A guest session: a machine booted through its profile's stages to a shell hil can drive.

Used by `hil run` (through the runner, which turns what goes wrong into verdicts) and directly by tests
and the pytest plugin. Hangs and crashes surface as StageTimeout / CrashSeen; QEMU dying as ConsoleClosed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hil.devices.net import E1000
from hil.guest.console import CommandResult, Console
from hil.guest.profiles import GuestOptions, GuestProfile
from hil.guest.stages import StageMark, Timeline, walk_stages
from hil.qemu.machine import Machine

SHELL_BUDGET = 30.0
SSH_GUEST_PORT = 22


class GuestSession:
    """Boot with `start()`, drive with `run()`, end with `close()` (or use as a context manager)."""

    def __init__(
        self,
        profile: GuestProfile,
        options: GuestOptions,
        run_dir: Path,
        *,
        factor: float = 1.0,
        keep: bool = False,
        on_mark: Callable[[StageMark], None] | None = None,
    ) -> None:
        self.profile = profile
        self.options = options
        self.factor = factor
        self.on_mark = on_mark
        self.network = E1000.with_forwards(("tcp", SSH_GUEST_PORT))
        spec = profile.machine_spec(options)
        spec = spec.with_changes(devices=(*spec.devices, self.network.qemu_args()))
        self.machine = Machine(spec, run_dir, keep=keep)
        self.console = Console(self.machine.paths.serial_socket, run_dir / "console.txt", profile.shell)
        self.timeline: Timeline | None = None

    def __enter__(self) -> GuestSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def run_dir(self) -> Path:
        return self.machine.run_dir

    @property
    def ssh_port(self) -> int:
        return self.network.host_port(SSH_GUEST_PORT)

    def start(self) -> Timeline:
        """Launch paused, attach the console, resume, walk the boot stages, prepare the shell."""
        self.machine.launch()
        self.console.connect()
        self.machine.resume()
        assert self.machine.started_at is not None
        self.timeline = walk_stages(
            self.console,
            self.profile.stages,
            self.machine.started_at,
            factor=self.factor,
            crash_patterns=self.profile.crash_patterns,
            on_mark=self.on_mark,
        )
        self.profile.prepare_shell(self.console, SHELL_BUDGET * self.factor)
        return self.timeline

    def run(self, command: str, timeout: float = 30.0) -> CommandResult:
        return self.console.run(command, timeout * self.factor)

    def close(self) -> None:
        self.console.close()
        if self.machine.keep_running:
            self.machine.detach()
        else:
            self.machine.stop()
