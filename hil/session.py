"""A guest session: a machine booted through its profile's stages to a shell hil can drive.

Used by `hil run` (through the runner, which turns what goes wrong into verdicts) and directly by tests
and the pytest plugin. Hangs and crashes surface as StageTimeout / CrashSeen; QEMU dying as ConsoleClosed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from hil.devices.base import Device
from hil.devices.net import E1000
from hil.errors import UsageError
from hil.guest.console import CommandResult, CommandTimeout, Console
from hil.guest.profiles import GuestOptions, GuestProfile
from hil.guest.stages import StageMark, Timeline, walk_stages
from hil.paths import private_dir
from hil.qemu.accel import AccelChoice
from hil.qemu.machine import Machine
from hil.qemu.snapshot import (
    Snapshot,
    SnapshotUnsupported,
    find_snapshot,
    save_snapshot,
    snapshot_key,
    snapshot_lock,
)
from hil.results import FaultEvent
from hil.triage.crash import stable_text
from hil.triage.parsers import parse_fault
from hil.triage.watchdog import ProgressWatch, WatchedConsole

if TYPE_CHECKING:
    from hil.guest.ssh import GuestSsh

SHELL_BUDGET = 30.0
FAULT_LINES = 200  # how far back a fault report is read (an exception dump is about 40 lines)
FAULT_EXCERPT = 40
SSH_GUEST_PORT = 22
GUEST_WAIT_SECONDS = 5.0  # how long a guest waits by itself for a device just plugged, before hil polls
CHECK_INTERVAL = 0.1  # hot-added devices show up within a second; poll often


@dataclass(frozen=True)
class PlannedDevice:
    device: Device
    at_boot: bool = True


@dataclass(frozen=True)
class DeviceSeen:
    ok: bool
    description: str
    evidence: str


class GuestSession:
    """Boot with `start()`, drive with `run()`, end with `close()` (or use as a context manager)."""

    def __init__(
        self,
        profile: GuestProfile,
        options: GuestOptions,
        run_dir: Path,
        *,
        devices: Sequence[PlannedDevice] = (),
        factor: float = 1.0,
        keep: bool = False,
        snapshot: bool = False,
        on_mark: Callable[[StageMark], None] | None = None,
        accel: AccelChoice | None = None,
        on_fault: Callable[[FaultEvent], None] | None = None,
    ) -> None:
        self.profile = profile
        self.accel = accel
        self.use_snapshot = snapshot
        self.snapshot_info: dict[str, object] = {}
        self._restore_evidence = ""  # what the guest printed in the restore's resync (its waits for devices)
        self.options = replace(options, work_dir=private_dir(run_dir))
        self.factor = factor
        self.on_mark = on_mark
        self.devices = _with_network(list(devices)) if profile.default_nic else list(devices)
        self.network = next((p.device for p in self.devices if isinstance(p.device, E1000)), None)
        if isinstance(self.network, E1000):
            self.network.forward("tcp", SSH_GUEST_PORT)
        for planned in self.devices:  # overlays must exist before the argv names them
            planned.device.prepare(private_dir(run_dir))
        spec = profile.machine_spec(self.options)
        spec = spec.with_changes(devices=(*spec.devices, *self._device_args()))
        self.machine = Machine(spec, run_dir, keep=keep)
        self.snapshot_key = snapshot_key(spec, self.run_dir, profile.name) if snapshot else None
        console = Console(self.machine.paths.serial_socket, run_dir / "console.txt", profile.shell,
                          profile.crash_patterns, raw_log=self.machine.paths.serial_log,
                          fault_patterns=profile.fault_patterns)  # fmt: skip
        console.on_fault = self._fault_seen
        self.on_fault = on_fault or (lambda event: None)
        self.faults: list[FaultEvent] = []  # programs' faults the guest went on after
        # Every wait ends on no progress (profile patterns, probe heartbeats), not at a fixed time.
        watch = ProgressWatch(self.machine.paths.serial_log, profile.progress_patterns)
        self.console = WatchedConsole(console, watch)
        self.timeline: Timeline | None = None

    def __enter__(self) -> GuestSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def run_dir(self) -> Path:
        return self.machine.run_dir

    @property
    def ssh_port(self) -> int | None:
        """The host port forwarded to the guest's SSH; None without a NIC."""
        return self.network.host_port(SSH_GUEST_PORT) if isinstance(self.network, E1000) else None

    def start(self) -> Timeline:
        """Boot to a shell: restored from a snapshot when asked for and one exists, else cold."""
        if self.snapshot_key is None:
            return self._cold_boot()
        # Published snapshots never change, so restores run in parallel; only making one takes the lock
        # (parallel workers wanting the same new snapshot wait for the first to save it).
        snapshot = find_snapshot(self.snapshot_key)
        if snapshot is None:
            with snapshot_lock(self.snapshot_key):
                snapshot = find_snapshot(self.snapshot_key)
                if snapshot is None:
                    self.timeline = self._cold_boot()
                    self._save()
        if snapshot is not None:
            self.timeline = self._restore(snapshot)
        else:
            self._plug_deferred()
        self._check_deferred()
        return self.timeline

    def _cold_boot(self) -> Timeline:
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
        self.console.activity = "shell setup"
        self.profile.prepare_shell(self.console, SHELL_BUDGET * self.factor)
        return self.timeline

    def _restore(self, snapshot: Snapshot) -> Timeline:
        started = time.monotonic()
        self.machine.restore_from = snapshot
        self.machine.launch()
        self.console.connect()
        self.machine.wait_restored()
        self._plug_deferred()  # while paused: the guest handles the hot-add during the resync below
        self.machine.resume()
        self.console.activity = "snapshot restore"
        self._restore_evidence = self.profile.after_restore(
            self.console, SHELL_BUDGET * self.factor, then=self._deferred_waits()
        )
        seconds = round(time.monotonic() - started, 3)
        self.snapshot_info = {"key": snapshot.key, "restored": True, "restore_seconds": seconds}
        return _restored_timeline(snapshot, started)

    def _save(self) -> None:
        assert self.snapshot_key is not None and self.timeline is not None
        meta = {"profile": self.profile.name, "stages": self.timeline.as_list()}
        try:
            saved = save_snapshot(self.machine.qmp, self.snapshot_key, self.machine.paths.disk_overlay, meta)
        except SnapshotUnsupported as err:
            self.snapshot_info = {"key": self.snapshot_key, "restored": False, "unsupported": str(err)}
        else:
            self.snapshot_info = {"key": saved.key, "restored": False, "saved_seconds": saved.meta["save_seconds"]}
        self.machine.qmp.execute("cont")

    def _deferred_devices(self) -> list[Device]:
        return [p.device for p in self.devices if p.at_boot and not p.device.migratable]

    def _plug_deferred(self) -> None:
        """Devices a snapshot cannot hold (NVMe) join over QMP."""
        for device in self._deferred_devices():
            device.hotplug(self.machine.qmp)

    def _deferred_waits(self) -> str | None:
        """The guest's own waits for the devices plugged during a restore, as one command (None: nothing to
        wait for), to run in the restore's resync round trip."""
        checks = [self.profile.device_check(device) for device in self._deferred_devices()]
        commands = [check.waiting_command(GUEST_WAIT_SECONDS) for check in checks if check and check.command]
        return "; ".join(command for command in commands if command) or None

    def _check_deferred(self) -> None:
        """The guest must show the hot-added devices before tests start (it waits for them itself). What it
        printed in the restore's resync counts; a device not seen there is polled for."""
        if not self.use_snapshot:
            return
        for device in self._deferred_devices():
            check = self.profile.device_check(device)
            if check and check.output_pattern and re.search(check.output_pattern, self._restore_evidence):
                continue
            seen = self.check_device(device.id, wait_in_guest=True)
            if not seen.ok:
                raise DeviceNotSeen(
                    f"the guest does not show {device.describe()} hot-added after the snapshot ({seen.description})"
                )

    def run(self, command: str, timeout: float = 30.0) -> CommandResult:
        """`command` in the guest's shell on the serial console: its status and output (CommandResult)."""
        return self.console.run(command, timeout * self.factor)

    def ssh(self, timeout: float | None = None) -> GuestSsh:
        """An SSH connection into the guest; UsageError for a guest without an SSH server."""
        access = self.profile.ssh_access(self.options)
        if access is None or self.ssh_port is None:
            raise UsageError(f"guest {self.profile.name} has no SSH server")
        from hil.guest.ssh import SSH_CONNECT_SECONDS, GuestSsh  # paramiko costs 50 ms of every hil start

        return GuestSsh.connect(self.ssh_port, access, (timeout or SSH_CONNECT_SECONDS) * self.factor)

    # --- devices ----------------------------------------------------------------------------------------

    def device(self, device_id: str) -> Device:
        for planned in self.devices:
            if planned.device.id == device_id:
                return planned.device
        raise UsageError(f"no device {device_id!r} in this session")

    def hotplug(self, device_id: str) -> None:
        """Plug in a device of this session (one declared not at boot, or one unplugged) over QMP."""
        self.device(device_id).hotplug(self.machine.qmp)

    def unplug(self, device_id: str, timeout: float = 30.0) -> None:
        """Unplug a device over QMP and wait until QEMU says it is gone."""
        self.device(device_id).unplug(self.machine.qmp, timeout * self.factor)

    def check_device(self, device_id: str, timeout: float = 30.0, wait_in_guest: bool = False) -> DeviceSeen:
        """Poll the guest until it shows the device as its profile expects, or the time is up. With
        `wait_in_guest` (a device just plugged), the guest first waits for it itself where its profile
        knows how, which answers as soon as it appears instead of at the next poll."""
        device = self.device(device_id)
        check = self.profile.device_check(device)
        if check is None or check.command is None:
            return DeviceSeen(False, device.describe(), f"no shell check known for guest {self.profile.name}")
        deadline = time.monotonic() + timeout * self.factor
        command = check.waiting_command(GUEST_WAIT_SECONDS) if wait_in_guest else check.command
        evidence = ""
        while True:
            try:
                result = self.console.run(command, max(5.0 + GUEST_WAIT_SECONDS, deadline - time.monotonic()))
                evidence = result.output
            except CommandTimeout as err:
                evidence = err.output
                self.console.resync()
            if check.output_pattern and re.search(check.output_pattern, evidence):
                return DeviceSeen(True, check.description, evidence)
            if time.monotonic() > deadline:
                return DeviceSeen(False, check.description, evidence)
            time.sleep(CHECK_INTERVAL)

    def _fault_seen(self, line: str) -> bool:
        """A program's fault report just ended (`line`): record it; True if it ends the run (a fault in the
        kernel, or of a program the guest cannot go on without)."""
        recent = self.console.recent_lines(FAULT_LINES)
        report = parse_fault(recent, line, self.profile.fault_patterns, _formats(self.profile.crash_format))
        if report is not None and self.profile.fault_ends_run(report):
            return True
        started = self.machine.started_at
        event = FaultEvent(
            summary=report.summary if report else stable_text(line),
            title=report.title if report else "unparsed fault",
            process=report.process if report else None,
            mode=report.mode if report else None,
            signature=report.signature if report else f"crash:{stable_text(line)[:120]}:unknown",
            line=line,
            seconds=round(time.monotonic() - started, 3) if started else None,
            excerpt=report.lines[-FAULT_EXCERPT:] if report else recent[-FAULT_EXCERPT:],
        )
        self.faults.append(event)
        self.on_fault(event)
        return False

    def close(self) -> None:
        self.console.close()
        if self.machine.keep_running:
            self.machine.detach()
        else:
            self.machine.stop()

    def _device_args(self) -> list[tuple[str, ...]]:
        groups = [p.device.slot_args() for p in self.devices]
        groups += [p.device.qemu_args() for p in self.devices if p.at_boot and not self._deferred(p)]
        return [g for g in groups if g]

    def _deferred(self, planned: PlannedDevice) -> bool:
        """With snapshots, non-migratable devices wait outside the saved machine and are hot-added."""
        return self.use_snapshot and not planned.device.migratable


class DeviceNotSeen(Exception):
    """A device hot-added after a snapshot never showed in the guest: the guest's failure, not the host's."""


def _restored_timeline(snapshot: Snapshot, started: float) -> Timeline:
    """The stages of the boot the snapshot was taken from, marked as restored."""
    marks = [StageMark(**{**mark, "status": "restored"}) for mark in snapshot.meta.get("stages", [])]
    return Timeline(started, marks)


def _with_network(devices: list[PlannedDevice]) -> list[PlannedDevice]:
    """Every guest gets a NIC (for SSH and the network stage); a scenario's own e1000 serves if present."""
    if any(isinstance(p.device, E1000) for p in devices):
        return devices
    return [*devices, PlannedDevice(E1000("net0"))]


def _formats(crash_format: str | None) -> list[str] | None:
    return [crash_format] if crash_format else None
