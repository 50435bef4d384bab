"""The one way to get a booted guest: profile, accelerator, timeout factor, session.

`hil run` (hil.runner), the pytest plugin and everything built on them prepare their guests here, so a
choice made for one (how the accelerator is picked, what the timeout factor defaults to, which console
watches for progress) holds for all. Starting the session and judging what went wrong stay with the caller
(hil.judge turns any outcome into a verdict).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from hil.guest.profiles import GuestOptions, GuestProfile, get_profile
from hil.guest.stages import StageMark
from hil.qemu.accel import AccelChoice, choose_accel
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
        self, request: BootRequest, run_dir: Path, on_mark: Callable[[StageMark], None] | None = None
    ) -> GuestSession:
        """A session ready to `start()`: QEMU not yet running, overlays and ports prepared."""
        profile = get_profile(request.guest)
        profile.check_options(request.options)
        accel = self.accel_for(profile, request)
        self.on_phase(f"accelerator: {accel.name} ({accel.reason})")
        factor = request.timeout_factor or DEFAULT_FACTOR[accel.name]
        options = replace(request.options, accel=accel.name)
        return GuestSession(profile, options, run_dir, devices=request.devices, factor=factor, keep=request.keep,
                            snapshot=request.snapshot, on_mark=on_mark, accel=accel)  # fmt: skip
