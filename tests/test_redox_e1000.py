"""`redox-e1000`: the real Redox kernel runs hil's initfs probe as a minimal e1000 driver on QEMU's user
network, with host steps alongside (needs HIL_REDOX_PKGS).

Each test is one `hil run` under TCG (about 4 s): the built-in scenario, one with another MAC, and one whose
host step expects other bytes than the probe sends.
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
name = "redox-e1000-variant"
guest = "redox-kernel"
[machine]
smp = 2
memory = 1024
initfs_probe = "redox-e1000"
[[devices]]
kind = "e1000"
id = "net0"
mac = "{mac}"
forwards = ["udp:7002"]
listen = ["udp", "tcp"]
[[steps]]
host = "receive"
proto = "udp"
payload = "{udp_payload}"
background = true
timeout = 30
[[steps]]
host = "receive"
proto = "tcp"
payload = "{tcp_payload}"
background = true
timeout = 30
[[steps]]
host = "send"
proto = "udp"
guest_port = 7002
payload = "to port 7002"
background = true
timeout = 30
[[steps]]
console_probe = "initfs"
timeout = 30
"""


def run(tmp_path: Path, scenario: Any) -> dict[str, Any]:
    options = RunOptions(accel="tcg", report_dir=tmp_path / "run", packages=PACKAGES)
    result = run_scenario(scenario, options)
    return json.loads((result.run_dir / "report.json").read_text())


def cases_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    probe = next(step for step in report["steps"] if step["kind"] == "console_probe")
    return {case["name"]: case for case in probe["cases"]}


def variant(tmp_path: Path, mac: str, udp_payload: str = spec.E1000_UDP_PAYLOAD) -> Any:
    path = tmp_path / "redox-e1000-variant.toml"
    path.write_text(SCENARIO.format(mac=mac, udp_payload=udp_payload, tcp_payload=spec.E1000_TCP_PAYLOAD))
    return parse_scenario(path)


def value(case: dict[str, Any], metric: str) -> float:
    return float(case["metrics"][metric]["value"])


def test_every_e1000_case_and_host_step_passes_on_the_real_kernel(tmp_path: Path) -> None:
    report = run(tmp_path, load_scenario("redox-e1000"))
    cases = cases_of(report)
    assert list(cases) == list(spec.E1000_CASES)
    assert report["verdict"] == "pass", (report["reason"], {n: c["reason"] for n, c in cases.items()})
    assert all(step["status"] == "pass" for step in report["steps"])
    assert any("MAC 52:54:00:68:69:6c" in line for line in cases["e1000_reset_mac"]["diagnostics"])
    assert any("10.0.2.2 is at 52:55:0a:00:02:02" in line for line in cases["e1000_arp"]["diagnostics"])
    assert value(cases["e1000_arp"], "rounds") == 8 and value(cases["e1000_arp"], "arp_rtt_us") > 0
    irq = cases["e1000_irq_intx"]
    assert value(irq, "interrupts") >= value(irq, "rx_frames") >= 8
    counters = cases["e1000_counters"]
    assert value(counters, "tx_frames") > 0 and value(counters, "rx_frames") > 0
    echo = next(step for step in report["steps"] if step["name"] == "host -> probe UDP echo via hostfwd")
    assert echo["details"]["received"] == echo["details"]["sent"]


def test_the_mac_checked_is_the_one_hil_gives_qemu(tmp_path: Path) -> None:
    report = run(tmp_path, variant(tmp_path, "52:54:00:12:34:56"))
    cases = cases_of(report)
    assert report["verdict"] == "pass", (report["reason"], {n: c["reason"] for n, c in cases.items()})
    assert any("MAC 52:54:00:12:34:56" in line for line in cases["e1000_reset_mac"]["diagnostics"])
    assert "7002" in " ".join(cases["e1000_udp_echo"]["diagnostics"])


def test_the_host_step_checks_the_bytes_the_probe_sent(tmp_path: Path) -> None:
    report = run(tmp_path, variant(tmp_path, "52:54:00:68:69:6c", udp_payload="other bytes"))
    udp = report["steps"][0]
    assert report["verdict"] == "fail"
    assert udp["status"] == "fail" and "wrong bytes" in udp["reason"]
    assert udp["details"]["received"] == spec.E1000_UDP_PAYLOAD
    assert cases_of(report)["e1000_udp_to_host"]["status"] == "pass"  # the probe saw its bytes come back


def test_without_an_e1000_the_pci_case_fails_by_name(tmp_path: Path) -> None:
    path = tmp_path / "redox-e1000-none.toml"
    path.write_text(SCENARIO.split("[[devices]]")[0] + '[[steps]]\nconsole_probe = "initfs"\ntimeout = 30\n')
    report = run(tmp_path, parse_scenario(path))
    cases = cases_of(report)
    assert report["verdict"] == "fail", report["reason"]
    assert cases["e1000_pci"]["status"] == "fail" and "no e1000" in cases["e1000_pci"]["reason"]
    assert "e1000_pci" in report["reason"] and "no e1000" in report["reason"]
    after = spec.E1000_CASES[spec.E1000_CASES.index("e1000_pci") + 1 :]
    assert all(cases[name]["status"] == "skip" for name in after), {n: cases[n]["status"] for n in after}
