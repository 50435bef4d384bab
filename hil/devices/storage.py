"""Storage devices: NVMe behind a PCIe root port (so it can be hot-added) and USB storage on xHCI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hil.devices.base import DEVICE_DELETE_TIMEOUT, Device, Qmp, device_del
from hil.devices.disk import disk_overlay, known_disk


class _DiskBacked(Device):
    """A device whose medium is a qcow2 overlay over a known-content disk, attached through -blockdev."""

    def __init__(self, id: str, size_mib: int = 64, seed: int = 0) -> None:
        super().__init__(id)
        self.size_mib = size_mib
        self.seed = seed
        self.overlay: Path | None = None

    @property
    def node_name(self) -> str:
        return f"{self.id}-disk"

    def prepare(self, run_dir: Path) -> None:
        self.overlay = disk_overlay(known_disk(self.size_mib, self.seed), run_dir, self.node_name)

    def blockdev(self) -> dict[str, Any]:
        if self.overlay is None:
            raise RuntimeError(f"{self.describe()}: prepare() was not called")
        return {
            "driver": "qcow2",
            "node-name": self.node_name,
            "file": {"driver": "file", "filename": str(self.overlay)},
        }

    def blockdev_arg(self) -> str:
        spec = self.blockdev()
        return f"driver=qcow2,node-name={spec['node-name']},file.driver=file,file.filename={spec['file']['filename']}"

    def add_backend(self, qmp: Qmp) -> None:
        qmp.execute("blockdev-add", self.blockdev())

    def remove_backend(self, qmp: Qmp) -> None:
        qmp.execute("blockdev-del", {"node-name": self.node_name})


class Nvme(_DiskBacked):
    """An NVMe controller with one namespace, on its own pcie-root-port."""

    kind = "nvme"
    hotpluggable = True
    migratable = False  # QEMU: "State blocked by non-migratable device"

    def __init__(self, id: str, size_mib: int = 64, seed: int = 0, chassis: int = 1) -> None:
        super().__init__(id, size_mib, seed)
        self.chassis = chassis

    @property
    def port_id(self) -> str:
        return f"{self.id}-port"

    @property
    def serial(self) -> str:
        return f"hil-{self.id}"

    @property
    def number(self) -> int:
        """Its place among the scenario's NVMe controllers (0 for the first): the order guests probe them in."""
        return self.chassis - 1

    def slot_args(self) -> tuple[str, ...]:
        return ("-device", f"pcie-root-port,id={self.port_id},chassis={self.chassis},slot={self.chassis}")

    def qemu_args(self) -> tuple[str, ...]:
        nvme = f"nvme,id={self.id},serial={self.serial},drive={self.node_name},bus={self.port_id}"
        return ("-blockdev", self.blockdev_arg(), "-device", nvme)

    def hotplug(self, qmp: Qmp) -> None:
        self.add_backend(qmp)
        qmp.execute(
            "device_add",
            {"driver": "nvme", "id": self.id, "serial": self.serial, "drive": self.node_name, "bus": self.port_id},
        )

    def unplug(self, qmp: Qmp, timeout: float = DEVICE_DELETE_TIMEOUT) -> None:
        device_del(qmp, self.id, timeout)
        self.remove_backend(qmp)


class UsbStorage(_DiskBacked):
    """A USB mass-storage device on an xHCI controller's bus."""

    kind = "usb-storage"
    hotpluggable = True

    def __init__(self, id: str, controller: str, size_mib: int = 64, seed: int = 0) -> None:
        super().__init__(id, size_mib, seed)
        self.controller = controller

    @property
    def serial(self) -> str:
        return f"HIL{self.id.upper().replace('-', '')}"[:20]

    def qemu_args(self) -> tuple[str, ...]:
        usb = f"usb-storage,id={self.id},bus={self.controller}.0,drive={self.node_name},serial={self.serial}"
        return ("-blockdev", self.blockdev_arg(), "-device", usb)

    def hotplug(self, qmp: Qmp) -> None:
        self.add_backend(qmp)
        qmp.execute(
            "device_add",
            {"driver": "usb-storage", "id": self.id, "bus": f"{self.controller}.0", "drive": self.node_name,
             "serial": self.serial},
        )  # fmt: skip

    def unplug(self, qmp: Qmp, timeout: float = DEVICE_DELETE_TIMEOUT) -> None:
        device_del(qmp, self.id, timeout)
        self.remove_backend(qmp)
