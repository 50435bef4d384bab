"""Devices from scenario tables: `[[devices]] kind = "nvme" ...` into Device objects, checked key by key."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from hil.devices.base import Device
from hil.devices.net import DEFAULT_MAC, E1000
from hil.devices.storage import Nvme, UsbStorage
from hil.devices.usb import INPUT_MODELS, XHCI_MODELS, UsbInput, Xhci

COMMON_KEYS = {"kind", "id", "plug"}
DEVICE_ID = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,31}")  # QEMU ids; also names overlay files and node names
MAX_DISK_MIB = 4096  # known-content disks are written in full into the cache
PLUG_MODES = ("boot", "hotplug")
MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


class DeviceSpecError(ValueError):
    """A device table is wrong: `key` names the key, `fix` says what to write instead."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"key '{key}': {problem}. Fix: {fix}")


def _nvme(table: dict[str, Any], index: int) -> Device:
    return Nvme(table["id"], size_mib=_size(table), seed=_int(table, "seed", 0), chassis=index + 1)


def _usb_storage(table: dict[str, Any], index: int) -> Device:
    controller = _str(table, "controller", None, required=True)
    return UsbStorage(table["id"], controller, size_mib=_size(table), seed=_int(table, "seed", 0))


def _xhci(table: dict[str, Any], index: int) -> Device:
    model = _str(table, "model", "qemu-xhci")
    if model not in XHCI_MODELS:
        raise DeviceSpecError("model", f"is {model!r}", f"use one of {', '.join(XHCI_MODELS)}")
    return Xhci(table["id"], model)


def _usb_input(table: dict[str, Any], index: int) -> Device:
    return UsbInput(table["id"], table["kind"], _str(table, "controller", None, required=True))


def _e1000(table: dict[str, Any], index: int) -> Device:
    forwards = []
    items = table.get("forwards", [])
    if not isinstance(items, list):
        raise DeviceSpecError("forwards", f"is {items!r}", 'give a list, e.g. forwards = ["tcp:7000", "udp:7001"]')
    for item in items:
        proto, _, port = str(item).partition(":")
        if proto not in ("tcp", "udp") or not port.isdigit() or not 0 < int(port) < 65536:
            raise DeviceSpecError("forwards", f"has {item!r}", 'write guest ports as "tcp:PORT" or "udp:PORT"')
        forwards.append((proto, int(port)))
    mac = _str(table, "mac", DEFAULT_MAC)
    if not MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
        raise DeviceSpecError("mac", f"is {mac!r}", 'give a unicast MAC as six hex pairs, e.g. "52:54:00:12:34:56"')
    listen = table.get("listen", [])
    if not isinstance(listen, list) or not all(p in ("tcp", "udp") for p in listen) or len(set(listen)) < len(listen):
        raise DeviceSpecError("listen", f"is {listen!r}", 'give host listeners as a list, e.g. listen = ["udp", "tcp"]')
    return E1000(table["id"], tuple(forwards), mac=mac, listen=tuple(listen))


BUILDERS: dict[str, tuple[Callable[[dict[str, Any], int], Device], set[str]]] = {
    "nvme": (_nvme, {"size_mib", "seed"}),
    "usb-storage": (_usb_storage, {"size_mib", "seed", "controller"}),
    "xhci": (_xhci, {"model"}),
    "usb-kbd": (_usb_input, {"controller"}),
    "usb-tablet": (_usb_input, {"controller"}),
    "e1000": (_e1000, {"forwards", "mac", "listen"}),
}
assert set(INPUT_MODELS) <= set(BUILDERS)


def device_from_table(table: dict[str, Any], index: int) -> tuple[Device, bool]:
    """(device, plugged at boot) from one [[devices]] table; raises DeviceSpecError."""
    kind = table.get("kind")
    if kind not in BUILDERS:
        raise DeviceSpecError("kind", f"is {kind!r}", f"use one of {', '.join(BUILDERS)}")
    if not isinstance(table.get("id"), str) or not DEVICE_ID.fullmatch(table["id"]):
        raise DeviceSpecError("id", f"is {table.get('id')!r}",
                              'give a name of ASCII letters, digits and "-" that starts with a letter, e.g. "nvme0"')
    build, extra = BUILDERS[kind]
    for key in table:
        if key not in COMMON_KEYS | extra:
            raise DeviceSpecError(
                key, f"is not a key of a {kind} device", f"use {', '.join(sorted(COMMON_KEYS | extra))}"
            )
    plug = _str(table, "plug", "boot")
    if plug not in PLUG_MODES:
        raise DeviceSpecError("plug", f"is {plug!r}", 'use "boot" (present at boot) or "hotplug" (added by a step)')
    device = build(table, index)
    if plug == "hotplug" and not device.hotpluggable:
        raise DeviceSpecError("plug", f"a {kind} device cannot be hot-added", 'use plug = "boot"')
    return device, plug == "boot"


def _size(table: dict[str, Any]) -> int:
    size = _int(table, "size_mib", 64)
    if not 1 <= size <= MAX_DISK_MIB:
        raise DeviceSpecError("size_mib", f"is {size}", f"give a size from 1 to {MAX_DISK_MIB} MiB")
    return size


def _int(table: dict[str, Any], key: str, default: int) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DeviceSpecError(key, f"is {value!r}", "give a whole number")
    return value


def _str(table: dict[str, Any], key: str, default: str | None, required: bool = False) -> str:
    if key not in table:
        if required:
            raise DeviceSpecError(key, "is missing", f'add {key} = "..." (e.g. the id of an xhci device)')
        return str(default)
    if not isinstance(table[key], str):
        raise DeviceSpecError(key, f"is {table[key]!r}", "give a string in quotes")
    return table[key]
