"""What every device offers: QEMU arguments for cold plug, QMP hotplug/unplug, and per-guest checks.

Device knowledge lives here and nowhere else: the QEMU driver names and properties, the QMP dance for
hot-adding and removing, and what a guest shows when the device works (a device node and sysfs facts on
the Linux reference guest; the driver daemon's log lines and its scheme on Redox).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

DEVICE_DELETE_TIMEOUT = 30.0


class Qmp(Protocol):
    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30.0) -> Any: ...

    def event_count(self) -> int: ...

    def wait_event(self, name: str, timeout: float, *, since: int = 0, match: Any = None) -> Any: ...


@dataclass(frozen=True)
class GuestCheck:
    """How a guest proves it sees a device: a shell command whose output matches, or console lines."""

    description: str
    command: str | None = None
    output_pattern: str | None = None
    console_patterns: tuple[str, ...] = ()


class Device(ABC):
    """One device of a scenario, identified by `id` (also its QEMU device id)."""

    kind: str = ""
    hotpluggable: bool = False
    # QEMU can save this device's state; snapshots leave out the others and hot-add them after a restore.
    migratable: bool = True

    def __init__(self, id: str) -> None:
        self.id = id

    def prepare(self, run_dir: Path) -> None:  # noqa: B027 - an optional hook; most devices need nothing
        """Create what the device needs in the run folder (disk overlays) before QEMU starts."""

    def slot_args(self) -> tuple[str, ...]:
        """Arguments that must exist at boot even when the device itself is hot-added later (a root port)."""
        return ()

    @abstractmethod
    def qemu_args(self) -> tuple[str, ...]:
        """Arguments to cold-plug the device at boot."""

    def hotplug(self, qmp: Qmp) -> None:
        raise NotImplementedError(f"{self.kind} devices cannot be hot-added")

    def unplug(self, qmp: Qmp, timeout: float = DEVICE_DELETE_TIMEOUT) -> None:
        raise NotImplementedError(f"{self.kind} devices cannot be removed at run time")

    def guest_path(self, guest: str) -> str | None:
        """Where guest `guest` exposes this device to programs (a block device node, a scheme path)."""
        return None

    @abstractmethod
    def guest_check(self, guest: str) -> GuestCheck | None:
        """What guest `guest` (a profile name) shows when this device works; None if unknown."""

    def describe(self) -> str:
        return f"{self.kind} {self.id}"


def device_del(qmp: Qmp, device_id: str, timeout: float) -> None:
    """device_del and wait for DEVICE_DELETED: only then is the device (and its backend) free."""
    since = qmp.event_count()
    qmp.execute("device_del", {"id": device_id})
    qmp.wait_event("DEVICE_DELETED", timeout, since=since, match=lambda e: e.data.get("device") == device_id)
