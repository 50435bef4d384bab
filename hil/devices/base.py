"""What every device offers: QEMU arguments for cold plug, QMP hotplug/unplug, and the facts a guest sees.

Device knowledge lives here and nowhere else: the QEMU driver names and properties, the QMP dance for
hot-adding and removing, and what QEMU shows the guest (serial numbers, product names, the order in which
controllers are probed). What a particular guest makes of a device (a /dev node on Linux, a driver's scheme
on Redox) is that guest's knowledge: its profile answers it (GuestProfile.device_check).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Protocol

DEVICE_DELETE_TIMEOUT = 30.0


class Qmp(Protocol):
    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30.0) -> Any: ...

    def event_count(self) -> int: ...

    def wait_event(self, name: str, timeout: float, *, since: int = 0, match: Any = None) -> Any: ...


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

    def describe(self) -> str:
        return f"{self.kind} {self.id}"


def device_del(qmp: Qmp, device_id: str, timeout: float) -> None:
    """device_del and wait for DEVICE_DELETED: only then is the device (and its backend) free."""
    since = qmp.event_count()
    qmp.execute("device_del", {"id": device_id})
    qmp.wait_event("DEVICE_DELETED", timeout, since=since, match=lambda e: e.data.get("device") == device_id)
