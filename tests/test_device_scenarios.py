"""The device scenarios on the real reference guest, and how their failures show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hil.runner import RunOptions, run_scenario
from hil.scenario import load_scenario

pytestmark = pytest.mark.qemu


def run(name: str, run_dir: Path, **options: object) -> dict:
    result = run_scenario(load_scenario(name), RunOptions(accel="tcg", report_dir=run_dir, **options))
    return json.loads((result.run_dir / "report.json").read_text())


def test_nvme_uring_reports_every_probe_case_and_metric(tmp_path: Path, reference_image) -> None:
    report = run("nvme-uring", tmp_path)
    assert report["verdict"] == "pass", report["reason"]
    probe = next(step for step in report["steps"] if step["kind"] == "probe")
    names = {case["name"]: case for case in probe["cases"]}
    for case in ("setup", "nop_batch", "out_of_order", "odirect_write_read", "cancel", "linked", "timeout"):
        assert names[case]["status"] == "pass", names[case]
    for depth in (1, 8, 32, 64):
        metrics = names[f"depth_{depth}"]["metrics"]
        assert {"iops", "lat_p50_us", "lat_p99_us"} <= set(metrics), metrics
        assert metrics["lat_p99_us"]["value"] >= metrics["lat_p50_us"]["value"] > 0


def test_xhci_storage_survives_unplug_and_replug(tmp_path: Path, reference_image) -> None:
    report = run("xhci-storage", tmp_path)
    assert report["verdict"] == "pass", report["reason"]
    kinds = [step["kind"] for step in report["steps"]]
    assert "unplug" in kinds and "hotplug" in kinds
    events = [json.loads(line) for line in (tmp_path / "qmp.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "DEVICE_DELETED" and e["data"].get("device") == "usb0" for e in events)


def test_e1000_net_moves_payloads_both_ways(tmp_path: Path, reference_image) -> None:
    report = run("e1000-net", tmp_path)
    assert report["verdict"] == "pass", report["reason"]
    host_steps = [step for step in report["steps"] if step["kind"] == "host"]
    assert len(host_steps) == 4 and all(step["status"] == "pass" for step in host_steps)
    argv = (tmp_path / "argv.txt").read_text()
    assert "hostfwd=tcp:127.0.0.1:" in argv and "hostfwd=udp:127.0.0.1:" in argv and "hostfwd=tcp::" not in argv


def test_a_device_the_guest_never_sees_fails_naming_it(tmp_path: Path, reference_image) -> None:
    report = run("nvme-uring", tmp_path / "cold", append="module_blacklist=nvme", timeout_factor=0.5, snapshot=False)
    assert report["verdict"] == "fail"
    assert "nvme nvme0" in report["reason"] and "namespace visible" in report["reason"]
    report = run("nvme-uring", tmp_path / "restored", append="module_blacklist=nvme", timeout_factor=0.5)
    assert report["verdict"] == "fail"
    assert "nvme nvme0" in report["reason"] and "hot-added after the snapshot" in report["reason"]


def test_a_failing_probe_case_shows_as_that_case(tmp_path: Path, reference_image) -> None:
    scenario = tmp_path / "broken-probe.toml"
    scenario.write_text(
        '[[steps]]\nname = "probe on a missing disk"\nprobe = "uring"\nargs = "--device /dev/nonexistent --quick"\n'
        "timeout = 120\n"
    )
    result = run_scenario(load_scenario(str(scenario)), RunOptions(accel="tcg", report_dir=tmp_path / "run"))
    report = json.loads((result.run_dir / "report.json").read_text())
    assert report["verdict"] == "fail"
    cases = {case["name"]: case["status"] for case in report["steps"][0]["cases"]}
    assert cases["odirect_write_read"] == "fail" and cases["nop_batch"] == "pass"
    assert "odirect_write_read" in report["reason"]
