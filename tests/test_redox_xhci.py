"""`redox-xhci`: the real Redox kernel runs hil's initfs probe against QEMU's xHCI, both models (needs
HIL_REDOX_PKGS for the runs): controller on PCI, capabilities, reset, each attached device on a root-hub port,
each enumerated with the ids QEMU gives it, a known block read from the usb-storage, which the host then
unplugs and plugs back when the probe asks. Each run is about 2 s under TCG."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from hil.guest.profiles import redox
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
seed = {seed}
[[devices]]
kind = "usb-kbd"
id = "kbd0"
controller = "xhci0"
[[devices]]
kind = "usb-tablet"
id = "tablet0"
controller = "xhci0"
"""
REQUESTS = 'unplug_on_request = "usb0"\nreplug_on_request = "usb0"'
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
{requests}
timeout = 30
"""
DEVICE_LINE = re.compile(r"port (\d+): (\w+), slot (\d+), bcdUSB 0x(\d+), EP0 max packet (\d+), 0x(\w+):0x(\w+)")


def run(tmp_path: Path, model: str, devices: str, requests: str = "") -> dict[str, Any]:
    path = tmp_path / "redox-xhci-variant.toml"
    path.write_text(SCENARIO.format(model=model, devices=devices, requests=requests))
    options = RunOptions(accel="tcg", report_dir=tmp_path / "run", packages=REDOX_PACKAGES)
    result = run_scenario(parse_scenario(path), options)
    return json.loads((result.run_dir / "report.json").read_text())


def devices_seen(lines: list[str]) -> list[tuple[str, str, int]]:
    """(speed, vid:pid, EP0 max packet) of each device line."""
    found = [DEVICE_LINE.search(line) for line in lines]
    return [(m[2], f"{int(m[6], 16):04x}:{int(m[7], 16):04x}", int(m[5])) for m in found if m]


@pytest.mark.parametrize("model", ["qemu-xhci", "nec-usb-xhci"])
def test_every_device_enumerates_and_the_storage_reads_across_unplug_and_replug(tmp_path: Path, model: str) -> None:
    report = run(tmp_path, model, DEVICES.format(seed=7), REQUESTS)
    cases = {case["name"]: case for case in report["steps"][0]["cases"]}
    assert list(cases) == list(spec.XHCI_CASES)
    assert report["verdict"] == "pass", (report["reason"], {n: c["reason"] for n, c in cases.items()})
    assert all(case["status"] == "pass" for case in cases.values())
    assert cases["xhci_ports"]["metrics"]["connected"]["value"] == 3
    assert model in cases["xhci_pci"]["diagnostics"][0]
    enumerated = cases["xhci_enumerate"]
    assert enumerated["metrics"]["devices"]["value"] == 3
    assert sorted(devices_seen(enumerated["diagnostics"])) == [("HS", "0627:0001", 64), ("HS", "0627:0001", 64),
                                                                ("SS", "46f4:0001", 512)]
    read = cases["xhci_storage_read"]
    assert any("verified against the known pattern (seed 7)" in line for line in read["diagnostics"])
    assert 0 < read["metrics"]["cbw_to_csw_us"]["value"] < 1_000_000
    assert any("CCS 1 -> 0 with CSC" in line for line in cases["xhci_unplug"]["diagnostics"])
    replug = cases["xhci_replug"]
    assert devices_seen(replug["diagnostics"]) == [("SS", "46f4:0001", 512)]
    assert any("verified against the known pattern (seed 7)" in line for line in replug["diagnostics"])
    output = report["steps"][0]["output"]
    assert "hil-request: unplug usb0: done" in output and "hil-request: replug usb0: done" in output


def test_without_the_request_keys_unplug_and_replug_skip(tmp_path: Path) -> None:
    report = run(tmp_path, "qemu-xhci", DEVICES.format(seed=0))
    cases = {case["name"]: case for case in report["steps"][0]["cases"]}
    assert report["verdict"] == "pass", report["reason"]
    assert cases["xhci_storage_read"]["status"] == "pass"
    for name in ("xhci_unplug", "xhci_replug"):
        assert cases[name]["status"] == "skip"
    assert "unplug_on_request" in cases["xhci_unplug"]["reason"]


def test_without_usb_devices_no_port_shows_one(tmp_path: Path) -> None:
    report = run(tmp_path, "qemu-xhci", "")
    cases = {case["name"]: case for case in report["steps"][0]["cases"]}
    assert cases["xhci_ports"]["status"] == "pass"  # none attached, none expected
    assert cases["xhci_ports"]["metrics"]["connected"]["value"] == 0
    assert cases["xhci_enumerate"]["status"] == "pass"
    assert cases["xhci_enumerate"]["metrics"]["devices"]["value"] == 0
    assert cases["xhci_storage_read"]["status"] == "skip"


@pytest.mark.parametrize(("wrong_id", "seed", "case", "reason"), [
    (True, 7, "xhci_enumerate", "no enumerated device is 0x627:0x2, which hil attached"),
    (False, 99, "xhci_storage_read", "slot 1: READ(10) LBA 8: not the known content of any block (seed 99)"),
])  # fmt: skip
def test_a_wrong_id_or_seed_fails_the_case_naming_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            wrong_id: bool, seed: int, case: str, reason: str) -> None:
    """The probe's checks can fail: told a keyboard id hil did not attach, or another seed than the disk's."""
    real = redox._xhci_target

    def wrong(devices: Any, requests: Any) -> spec.XhciTarget | None:
        target = real(devices, requests)
        assert target is not None
        ids = (*target.ids[:-1], 0x06270002) if wrong_id else target.ids
        return dataclasses.replace(target, ids=ids, storage_seed=seed)

    monkeypatch.setattr(redox, "_xhci_target", wrong)
    report = run(tmp_path, "qemu-xhci", DEVICES.format(seed=7))
    cases = {case["name"]: case for case in report["steps"][0]["cases"]}
    assert report["verdict"] == "fail"
    assert cases[case]["status"] == "fail"
    assert reason in cases[case]["reason"], cases[case]["reason"]
