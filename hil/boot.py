"""The one way to get a booted guest: profile, accelerator, timeout factor, session, judged boot.

`hil run` (hil.runner, and through it run sets, tokio's examples and bisect's runs) and the pytest plugin
prepare and boot their guests here, so a choice made for one (how the accelerator is picked, what the
timeout factor defaults to, which console watches for progress, how a failed boot is judged, what the
report keeps of a session) holds for all. hil.judge turns any outcome into a verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hil.guest.profiles import GuestOptions, GuestProfile, get_profile
from hil.guest.stages import StageMark
from hil.judge import Judge
from hil.lifetime import signals_deferred
from hil.qemu.accel import AccelChoice, choose_accel
from hil.qemu.kept import update_kept
from hil.results import FaultEvent, RunResult
from hil.session import GuestSession, PlannedDevice

# Budgets are written for TCG; KVM runs the same guest in about half the time.
DEFAULT_FACTOR = {"tcg": 1.0, "kvm": 0.5}


@dataclass(frozen=True)
class BootRequest:
    """Everything that decides which guest boots and how patiently hil waits for it."""

    guest: str
    options: GuestOptions
    devices: tuple[PlannedDevice, ...] = ()
    accel: str = "auto"
    timeout_factor: float | None = None  # None: the accelerator's default
    snapshot: bool = False
    keep: bool = False


class Booter:
    """Prepares sessions; remembers the accelerator it chose, so a process that boots many guests (a
    pytest worker) decides once."""

    def __init__(self, on_phase: Callable[[str], None] | None = None) -> None:
        self.on_phase = on_phase or (lambda text: None)
        self._accel: dict[tuple[str, str, str], AccelChoice] = {}

    def accel_for(self, profile: GuestProfile, request: BootRequest) -> AccelChoice:
        key = (request.accel, profile.name, request.options.qemu_binary)
        if key not in self._accel:
            self.on_phase("choosing the accelerator")
            probe = profile.kvm_probe(request.options)
            self._accel[key] = choose_accel(request.accel, probe, request.options.qemu_binary)
        return self._accel[key]

    def prepare(
        self,
        request: BootRequest,
        run_dir: Path,
        on_mark: Callable[[StageMark], None] | None = None,
        on_fault: Callable[[FaultEvent], None] | None = None,
    ) -> GuestSession:
        """A session ready to `start()`: QEMU not yet running, overlays and ports prepared."""
        profile = get_profile(request.guest)
        profile.check_options(request.options)
        accel = self.accel_for(profile, request)
        self.on_phase(f"accelerator: {accel.name} ({accel.reason})")
        factor = request.timeout_factor or DEFAULT_FACTOR[accel.name]
        options = replace(request.options, accel=accel.name)
        return GuestSession(profile, options, run_dir, devices=request.devices, factor=factor, keep=request.keep,
                            snapshot=request.snapshot, on_mark=on_mark, accel=accel, on_fault=on_fault)  # fmt: skip

    def boot(
        self,
        request: BootRequest,
        judge: Judge,
        on_mark: Callable[[StageMark], None] | None = None,
        on_fault: Callable[[FaultEvent], None] | None = None,
    ) -> GuestSession:
        """Prepare and boot a guest for `judge`'s run. Whatever stops the boot is judged at once, while QEMU
        is still there to examine; the session stays with the judge (`judge.session`) for `end_session`."""
        judge.session = session = self.prepare(request, judge.result.run_dir, on_mark, on_fault)
        judge.result.accel = session.accel
        judge.result.details["ssh_port"] = session.ssh_port
        self.on_phase("booting")
        try:
            judge.result.timeline = session.start()
        except BaseException as err:
            judge.ended_by(err)
            raise
        return session


def end_session(session: GuestSession, result: RunResult) -> None:
    """Stop the guest (or leave it running when asked to keep it), keeping what the report says of it."""
    if session.snapshot_info:
        result.details["snapshot"] = session.snapshot_info
    with signals_deferred():
        session.close()
    if session.machine.keep_running:
        result.kept = _kept_info(session)


def _kept_info(session: GuestSession) -> dict[str, object]:
    process = session.machine.process
    access = session.profile.ssh_access(session.options)
    info: dict[str, object] = {
        "pid": process.pid if process else None,
        "qmp_socket": str(session.machine.paths.qmp_socket),
        "serial_socket": str(session.machine.paths.serial_socket),
        "guest": session.profile.name,
        "ssh_port": session.ssh_port,
    }
    if access is not None:  # what `hil ssh`, `hil scp` and `hil exec` log in with
        info.update(ssh_user=access.user, ssh_key=str(access.key_file))
    update_kept(session.run_dir, info)
    return info
