"""`redox-nvme`: the real Redox kernel runs hil's initfs probe as a minimal NVMe driver (needs HIL_REDOX_PKGS).

Each test is one `hil run` of a scenario under TCG (about 5-10 s): the built-in one, one without the NVMe
controller, and one with another namespace size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hil.initfs_probe import spec
from hil.runner import RunOptions, run_scenario
from hil.scenario import load_scenario, parse_scenario
from tests.helpers import REDOX_KERNEL_MARKS, REDOX_PACKAGES

PACKAGES = REDOX_PACKAGES
pytestmark = REDOX_KERNEL_MARKS

SCENARIO = """
name = "redox-nvme-variant"
guest = "redox-kernel"
[machine]
smp = 2
memory = 1024
initfs_probe = "redox-nvme"
{devices}
[[steps]]
name = "initfs probe"
console_probe = "initfs"
timeout = 60
"""
NVME_32M = '[[devices]]\nkind = "nvme"\nid = "disk1"\nsize_mib = 32\n'


def run(tmp_path: Path, scenario: Any) -> dict[str, Any]:
    options = RunOptions(accel="tcg", report_dir=tmp_path / "run", packages=PACKAGES)
    result = run_scenario(scenario, options)
    return json.loads((result.run_dir / "report.json").read_text())


def cases_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {case["name"]: case for case in report["steps"][0]["cases"]}


def variant(tmp_path: Path, devices: str) -> Any:
    path = tmp_path / "redox-nvme-variant.toml"
    path.write_text(SCENARIO.format(devices=devices))
    return parse_scenario(path)


def test_every_nvme_case_passes_on_the_real_kernel(tmp_path: Path) -> None:
    report = run(tmp_path, load_scenario("redox-nvme"))
    cases = cases_of(report)
    assert list(cases) == list(spec.NVME_CASES)
    assert report["verdict"] == "pass", (report["reason"], {n: c["reason"] for n, c in cases.items()})
    assert all(case["status"] == "pass" for case in cases.values())
    assert cases["nvme_identify"]["metrics"]["namespace_bytes"]["value"] == 64 << 20
    assert any("serial 'hil-nvme0'" in line for line in cases["nvme_identify"]["diagnostics"])
    for irq in ("nvme_irq_intx", "nvme_irq_msix"):
        assert cases[irq]["metrics"]["interrupts"]["value"] >= cases[irq]["metrics"]["ops"]["value"] > 0
    for depth in (1, 8, 32, 64):
        metrics = cases[f"depth_{depth}"]["metrics"]
        assert {"iops", "lat_p50_us", "lat_p99_us", "lat_max_us", "ooo", "ops"} <= set(metrics)
        assert metrics["max_inflight"]["value"] == depth and metrics["iops"]["value"] > 0
    online = cases["cpu_count"]["metrics"]["cpus"]["value"]
    assert report["cpus"] == {"requested": 2, "online": online, "short": online < 2}


def test_without_an_nvme_controller_the_pci_case_fails_by_name(tmp_path: Path) -> None:
    report = run(tmp_path, variant(tmp_path, ""))
    cases = cases_of(report)
    assert report["verdict"] == "fail", report["reason"]
    assert cases["nvme_pci"]["status"] == "fail"
    assert "no NVMe controller on PCI" in cases["nvme_pci"]["reason"]
    assert "nvme_pci" in report["reason"] and "no NVMe controller on PCI" in report["reason"]
    assert all(cases[name]["status"] == "skip" for name in spec.NVME_CASES[spec.NVME_CASES.index("nvme_pci") + 1 :])


def test_another_namespace_size_is_what_identify_reports(tmp_path: Path) -> None:
    report = run(tmp_path, variant(tmp_path, NVME_32M))
    cases = cases_of(report)
    assert report["verdict"] == "pass", (report["reason"], {n: c["reason"] for n, c in cases.items()})
    assert cases["nvme_identify"]["metrics"]["namespace_bytes"]["value"] == 32 << 20
    assert any("serial 'hil-disk1'" in line for line in cases["nvme_identify"]["diagnostics"])
