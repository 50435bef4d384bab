"""USB host controllers (xHCI: qemu-xhci or the NEC model Redox's build system uses) and input devices."""

from __future__ import annotations

from hil.devices.base import DEVICE_DELETE_TIMEOUT, Device, Qmp, device_del

XHCI_MODELS = ("qemu-xhci", "nec-usb-xhci")
# What QEMU's USB input devices call themselves (their product string descriptor).
INPUT_PRODUCTS = {"usb-kbd": "QEMU USB Keyboard", "usb-tablet": "QEMU USB Tablet"}
INPUT_MODELS = tuple(INPUT_PRODUCTS)
# The USB ids (idVendor << 16 | idProduct) QEMU's device descriptors give (seen by the redox-xhci probe).
USB_IDS = {"usb-storage": 0x46F40001, "usb-kbd": 0x06270001, "usb-tablet": 0x06270001}


class Xhci(Device):
    kind = "xhci"

    def __init__(self, id: str, model: str = "qemu-xhci") -> None:
        super().__init__(id)
        if model not in XHCI_MODELS:
            raise ValueError(f"xhci model must be one of {', '.join(XHCI_MODELS)}")
        self.model = model

    def qemu_args(self) -> tuple[str, ...]:
        return ("-device", f"{self.model},id={self.id}")


class UsbInput(Device):
    """A USB keyboard or tablet on an xHCI bus; hot-pluggable like any USB device."""

    hotpluggable = True

    def __init__(self, id: str, model: str, controller: str) -> None:
        super().__init__(id)
        if model not in INPUT_MODELS:
            raise ValueError(f"USB input model must be one of {', '.join(INPUT_MODELS)}")
        self.kind = model
        self.controller = controller

    def qemu_args(self) -> tuple[str, ...]:
        return ("-device", f"{self.kind},id={self.id},bus={self.controller}.0")

    def hotplug(self, qmp: Qmp) -> None:
        qmp.execute("device_add", {"driver": self.kind, "id": self.id, "bus": f"{self.controller}.0"})

    def unplug(self, qmp: Qmp, timeout: float = DEVICE_DELETE_TIMEOUT) -> None:
        device_del(qmp, self.id, timeout)

    @property
    def product(self) -> str:
        return INPUT_PRODUCTS[self.kind]
