"""What triage needs of a booted guest: a Protocol, so triage types the session it examines without
importing hil.session (which imports triage's watchdog). GuestSession is the one implementation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from hil.guest.profiles import GuestOptions, GuestProfile
from hil.qemu.machine import Machine
from hil.triage.watchdog import WatchedConsole

if TYPE_CHECKING:
    from hil.guest.ssh import GuestSsh


class TriageTarget(Protocol):
    profile: GuestProfile
    options: GuestOptions
    machine: Machine
    console: WatchedConsole

    @property
    def run_dir(self) -> Path: ...

    @property
    def ssh_port(self) -> int | None: ...

    def ssh(self, timeout: float = ...) -> GuestSsh: ...
