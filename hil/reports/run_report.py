"""report.json: the verdict, the boot-stage timeline, the steps and every artifact of one run."""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hil import __version__
from hil.results import REPORT_NAME, RunResult
from hil.store import atomic_write_json

if TYPE_CHECKING:
    from hil.scenario import Scenario

ARTIFACT_FILES = {
    "argv": "argv.txt",
    "serial_log": "serial.log",
    "qemu_serial_log": "qemu-serial.log",
    "console_transcript": "console.txt",
    "qmp_log": "qmp.jsonl",
    "qemu_stderr": "qemu.stderr",
    "scenario": "scenario.toml",
    "traceback": "hil-traceback.txt",
    "kept": "kept.json",
    "hang_report": "hang-report.json",
    "hang_report_text": "hang-report.txt",
    "crash_report": "crash-report.json",
    "crash_report_text": "crash-report.txt",
    "guest_memory": "guest-memory.elf",
}


def write_report(result: RunResult, scenario: Scenario | None = None) -> Path:
    """report.json for `result` (atomically: a reader never sees half of one); `scenario` is None for a
    guest booted without one (the pytest plugin's)."""
    run_dir = result.run_dir
    if scenario is not None:
        _copy_scenario(scenario, run_dir)
    report = build_report(result, scenario)
    return atomic_write_json(run_dir / REPORT_NAME, report)


def build_report(result: RunResult, scenario: Scenario | None = None) -> dict[str, Any]:
    timeline = result.timeline
    return {
        "hil_version": __version__,
        "scenario": result.scenario,
        "scenario_source": str(scenario.source) if scenario else None,
        "guest": result.guest,
        "verdict": str(result.verdict),
        "reason": result.reason,
        "exit_code": result.exit_code,
        # What `hil bisect` compares between runs: hang:<class>:<where>, crash:<title>:<frame>, fail:step:<name>
        "signature": result.details.get("signature"),
        "accel": result.accel.name if result.accel else None,
        "accel_reason": result.accel.reason if result.accel else None,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(result.started_wall)),
        "duration_s": round(result.duration, 3),
        "stages": timeline.as_list() if timeline else [],
        "steps": [asdict(step) for step in result.steps],
        "faults": [asdict(fault) for fault in result.faults],
        **result.details,
        "kept": result.kept,
        "run_dir": str(result.run_dir),
        "artifacts": artifacts_of(result.run_dir),
    }


def artifacts_of(run_dir: Path) -> dict[str, str]:
    """Artifact name -> path relative to the run folder, for those that exist."""
    found = {name: file for name, file in ARTIFACT_FILES.items() if (run_dir / file).exists()}
    found["report"] = REPORT_NAME
    return found


def _copy_scenario(scenario: Scenario, run_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (run_dir / "scenario.toml").write_text(scenario.source.read_text())
