"""USB host controllers (xHCI: qemu-xhci or the NEC model Redox's build system uses) and input devices."""

from __future__ import annotations

from hil.devices.base import DEVICE_DELETE_TIMEOUT, Device, GuestCheck, Qmp, device_del

XHCI_MODELS = ("qemu-xhci", "nec-usb-xhci")
INPUT_MODELS = ("usb-kbd", "usb-tablet")


class Xhci(Device):
    kind = "xhci"

    def __init__(self, id: str, model: str = "qemu-xhci") -> None:
        super().__init__(id)
        if model not in XHCI_MODELS:
            raise ValueError(f"xhci model must be one of {', '.join(XHCI_MODELS)}")
        self.model = model

    def qemu_args(self) -> tuple[str, ...]:
        return ("-device", f"{self.model},id={self.id}")

    def guest_check(self, guest: str) -> GuestCheck | None:
        if guest == "reference":
            return GuestCheck(
                "an xHCI host controller bound to xhci_hcd",
                command="ls /sys/bus/pci/drivers/xhci_hcd/ | grep :",
                output_pattern=r"\d{4}:\w\w:\w\w\.\d",
            )
        if guest.startswith("redox"):
            return GuestCheck("xhcid started", console_patterns=(r"XHCI",))
        return None


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

    def guest_check(self, guest: str) -> GuestCheck | None:
        product = {"usb-kbd": "QEMU USB Keyboard", "usb-tablet": "QEMU USB Tablet"}[self.kind]
        if guest == "reference":
            return GuestCheck(product, command="cat /sys/bus/usb/devices/*/product", output_pattern=product)
        return None
