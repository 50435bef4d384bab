"""`redox-xhci`: the real Redox kernel runs hil's initfs probe against QEMU's xHCI, both models (needs
HIL_REDOX_PKGS for the runs): controller on PCI, capabilities, reset, each attached device on a root-hub port.
Each run is about 2 s under TCG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hil.initfs_probe import spec
from hil.runner import RunOptions, run_scenario
from hil.scenario import parse_scenario
from tests.helpers import REDOX_KERNEL_MARKS, REDOX_PACKAGES

pytestmark = REDOX_KERNEL_MARKS

DEVICES = """
[[devices]]
kind = "usb-storage"
id = "usb0"
controller = "xhci0"
size_mib = 32
[[devices]]
kind = "usb-kbd"
id = "kbd0"
controller = "xhci0"
[[devices]]
kind = "usb-tablet"
id = "tablet0"
controller = "xhci0"
"""
SCENARIO = """
name = "redox-xhci-variant"
guest = "redox-kernel"
[machine]
smp = 2
memory = 1024
initfs_probe = "redox-xhci"
[[devices]]
kind = "xhci"
id = "xhci0"
model = "{model}"
{devices}
[[steps]]
console_probe = "initfs"
timeout = 30
"""


def run(tmp_path: Path, model: str, devices: str) -> dict[str, Any]:
    path = tmp_path / "redox-xhci-variant.toml"
    path.write_text(SCENARIO.format(model=model, devices=devices))
    options = RunOptions(accel="tcg", report_dir=tmp_path / "run", packages=REDOX_PACKAGES)
    result = run_scenario(parse_scenario(path), options)
    return json.loads((result.run_dir / "report.json").read_text())


@pytest.mark.parametrize("model", ["qemu-xhci", "nec-usb-xhci"])
def test_every_attached_device_shows_on_a_root_hub_port(tmp_path: Path, model: str) -> None:
    report = run(tmp_path, model, DEVICES)
    cases = {case["name"]: case for case in report["steps"][0]["cases"]}
    assert list(cases) == list(spec.XHCI_CASES)
    assert report["verdict"] == "pass", (report["reason"], {n: c["reason"] for n, c in cases.items()})
    assert cases["xhci_ports"]["metrics"]["connected"]["value"] == 3
    assert sum("connected" in line for line in cases["xhci_ports"]["diagnostics"]) == 3
    assert model in cases["xhci_pci"]["diagnostics"][0]
    assert cases["xhci_noop"]["status"] == "pass"  # command ring -> Command Completion event, code 1


def test_without_usb_devices_no_port_shows_one(tmp_path: Path) -> None:
    report = run(tmp_path, "qemu-xhci", "")
    cases = {case["name"]: case for case in report["steps"][0]["cases"]}
    assert cases["xhci_ports"]["status"] == "pass"  # none attached, none expected
    assert cases["xhci_ports"]["metrics"]["connected"]["value"] == 0
