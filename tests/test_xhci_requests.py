"""Host side of the redox-xhci probe's hotplug cases and USB ids: the console_probe step's unplug_on_request /
replug_on_request keys (checked when the scenario loads), how they and the devices' ids reach the probe's
build header, and what the step does when the probe prints a request line. No VM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hil import steps
from hil.devices.storage import UsbStorage
from hil.devices.usb import USB_IDS, UsbInput, Xhci
from hil.errors import UsageError
from hil.guest.profiles.base import GuestOptions
from hil.guest.profiles.redox import RedoxOptions
from hil.initfs_probe import build, spec
from hil.initfs_probe.abi import ABIS, DEFAULT_ABI
from hil.qemu.qmp import QmpCommandError
from hil.runner import _console_requests
from hil.scenario import Step, parse_scenario

SCENARIO = """
name = "x"
guest = "redox-kernel"
[[devices]]
kind = "xhci"
id = "xhci0"
[[devices]]
kind = "usb-storage"
id = "usb0"
controller = "xhci0"
[[devices]]
kind = "usb-kbd"
id = "kbd0"
controller = "xhci0"
[[steps]]
console_probe = "initfs"
{keys}
"""


def scenario(tmp_path: Path, keys: str) -> Any:
    path = tmp_path / "x.toml"
    path.write_text(SCENARIO.format(keys=keys))
    return parse_scenario(path)


def test_the_request_keys_reach_the_run_options(tmp_path: Path) -> None:
    loaded = scenario(tmp_path, 'unplug_on_request = "usb0"\nreplug_on_request = "usb0"')
    assert _console_requests(loaded) == {"unplug": "usb0", "replug": "usb0"}
    assert _console_requests(scenario(tmp_path, 'unplug_on_request = "usb0"')) == {"unplug": "usb0"}
    assert _console_requests(scenario(tmp_path, "")) == {}


@pytest.mark.parametrize(("keys", "message"), [
    ('unplug_on_request = "usb9"', r"steps\[0\]\.unplug_on_request.*unknown device 'usb9'"),
    ('unplug_on_request = "kbd0"', r"steps\[0\]\.unplug_on_request.*usb-kbd.*name a usb-storage"),
    ('replug_on_request = "usb0"', r"steps\[0\]\.replug_on_request.*without unplug_on_request"),
    ('unplug_on_request = "usb0"\nreplug_on_request = "kbd0"', r"steps\[0\]\.replug_on_request.*'kbd0'.*same"),
    ("unplug_on_request = 3", r"steps\[0\]\.unplug_on_request"),
])  # fmt: skip
def test_bad_request_keys_name_the_field(tmp_path: Path, keys: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        scenario(tmp_path, keys)


def target(requests: dict[str, str] | None = None, seed: int = 5) -> spec.XhciTarget | None:
    devices = (Xhci("xhci0"), UsbStorage("usb0", "xhci0", seed=seed), UsbInput("kbd0", "usb-kbd", "xhci0"),
               UsbInput("tab0", "usb-tablet", "xhci1"))  # on another controller: not this one's
    own: dict[str, object] = {"devices": devices}
    if requests:
        own["console_requests"] = requests
    return RedoxOptions.of(GuestOptions(own=own)).xhci


def test_the_profile_gives_the_probe_ids_seed_and_requests() -> None:
    assert target() == spec.XhciTarget("qemu-xhci", 2, (USB_IDS["usb-storage"], USB_IDS["usb-kbd"]), 5)
    both = target({"unplug": "usb0", "replug": "usb0"})
    assert both is not None and both.unplug and both.replug
    other = target({"unplug": "kbd0"})  # a request for another device is no request for the usb-storage
    assert other is not None and not other.unplug


def test_the_header_carries_the_ids_seed_and_requests() -> None:
    usb = target({"unplug": "usb0"}, seed=9)
    header = build.build_header(spec.VARIANTS["redox-xhci"], ABIS[DEFAULT_ABI], "debug", xhci=usb)
    assert "#define HIL_USB_IDS 0x46f40001, 0x06270001, \n" in header
    assert "#define HIL_USB_STORAGE 1\n" in header and "#define HIL_USB_DISK_SEED 9ULL\n" in header
    assert "#define HIL_XHCI_UNPLUG 1\n" in header and "#define HIL_XHCI_REPLUG 0\n" in header
    bare = build.build_header(spec.VARIANTS["redox-xhci"], ABIS[DEFAULT_ABI], "debug")
    assert "#define HIL_USB_IDS \n" in bare and "#define HIL_USB_STORAGE 0\n" in bare


class FakeSession:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.error = error

    def unplug(self, device: str, timeout: float) -> None:
        self.calls.append(("unplug", device))
        if self.error:
            raise self.error

    def hotplug(self, device: str) -> None:
        self.calls.append(("hotplug", device))


def console_step(**requests: str) -> Step:
    params = {"console_probe": "initfs", "unplug_on_request": None, "replug_on_request": None, **requests}
    return Step("probe", "console_probe", params)


def test_a_request_line_unplugs_and_replugs_the_named_device() -> None:
    session = FakeSession()
    step = console_step(unplug_on_request="usb0", replug_on_request="usb0")
    assert "unplug usb0: done in" in steps._host_request(session, step, "unplug")  # type: ignore[arg-type]
    assert "replug usb0: done in" in steps._host_request(session, step, "replug")  # type: ignore[arg-type]
    assert session.calls == [("unplug", "usb0"), ("hotplug", "usb0")]


def test_a_request_the_step_does_not_take_is_noted_not_done() -> None:
    session = FakeSession()
    line = steps._host_request(session, console_step(), "unplug")  # type: ignore[arg-type]
    assert "ignored: the step has no unplug_on_request" in line and session.calls == []
    assert "ignored" in steps._host_request(session, console_step(), "reboot")  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [TimeoutError("no DEVICE_DELETED"),
                                   QmpCommandError("device_del", "DeviceNotFound", "no usb0")])
def test_a_failed_unplug_is_noted_and_the_probe_reports_it(error: Exception) -> None:
    session = FakeSession(error)
    line = steps._host_request(session, console_step(unplug_on_request="usb0"), "unplug")  # type: ignore[arg-type]
    assert line == f"hil-request: unplug usb0: failed ({error})"
