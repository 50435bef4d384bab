"""JUnit XML from a run set (or single runs), written with junitparser.

One <testsuite> per scenario; in it one <testcase> per run (`boot[smp=2,run=1]`) and one per probe case
(`nvme-uring[smp=2,run=1] :: io_uring probe :: depth_8`) with the case's metrics as properties.
fail, crash and hang become <failure>, infra becomes <error> (CI tells the two apart: a kernel regression
vs a broken runner), with the reason and the guest's last console lines. Earlier infra attempts that were
retried become <rerunError> (the Surefire/xunit2 convention). <system-out> names every artifact of the run,
with GitLab's [[ATTACHMENT|path]] for the serial log.
"""

from __future__ import annotations

import os
import re
import socket
from collections import defaultdict
from pathlib import Path

from junitparser import Error, Failure, Skipped
from junitparser.xunit2 import JUnitXml, RerunError, TestCase, TestSuite

from hil.reports.facts import (
    ProbeCase,
    artifact_files,
    failing_steps,
    last_console_lines,
    probe_cases,
    ready_seconds,
    triage_text,
)
from hil.results import CaseStatus, CellResult, RunSetResult, Verdict

# XML 1.0 forbids most control characters; a guest's console can print any byte.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
CONSOLE_LINES = 30


def write_junit(result: RunSetResult, path: Path, link_base: Path | None = None) -> Path:
    """Write the JUnit file; artifact paths in it are relative to `link_base` (default: the current folder,
    which is what GitLab resolves attachments against)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    build_junit(result, link_base or Path.cwd()).write(str(path), pretty=True)
    return path


def build_junit(result: RunSetResult, link_base: Path) -> JUnitXml:
    xml = JUnitXml(result.name)
    by_scenario: dict[str, list[CellResult]] = defaultdict(list)
    for cell in result.cells:
        by_scenario[cell.cell.label].append(cell)
    host = socket.gethostname()
    for scenario, cells in by_scenario.items():
        suite = TestSuite(scenario)
        suite.hostname, suite.timestamp = host, _timestamp(_first_start(cells) or result.started)
        cases: list[TestCase] = []
        for cell in cells:
            cases.append(_run_case(cell, link_base))
            cases += [_probe_case(cell, case) for case in probe_cases(cell.report)]
        suite.add_testcases(cases)
        xml.add_testsuite(suite)
    if result.skipped:
        xml.add_testsuite(_skipped_suite(result, host))
    xml.update_statistics()
    return xml


def _skipped_suite(result: RunSetResult, host: str) -> TestSuite:
    """What the run set left out on purpose (an example that cannot run here), as skipped test cases."""
    suite = TestSuite(f"{result.name} (not run)")
    suite.hostname, suite.timestamp = host, _timestamp(result.started)
    for name, why in result.skipped.items():
        case = TestCase(name, f"hil.{result.name}", 0.0)
        case.result = [Skipped(_xml_safe(why[:1000]))]
        suite.add_testcase(case)
    return suite


def _run_case(result: CellResult, link_base: Path) -> TestCase:
    case = TestCase(result.cell.title, f"hil.{result.cell.label}", round(result.seconds, 3))
    for name, value in _run_properties(result).items():
        case.add_property(name, _xml_safe(str(value)))
    if result.verdict.is_failure:
        case.result = [_outcome(Failure, result)]
    elif result.verdict != Verdict.PASS:
        case.result = [_outcome(Error, result)]
    for attempt in result.attempts[:-1]:  # infra attempts that were retried
        rerun = RerunError(_xml_safe(attempt.reason[:500]), "infra")
        rerun.text = _xml_safe(f"attempt in {_link(attempt.report_dir, link_base)}: {attempt.reason}")
        case.add_interim_result(rerun)
    case.system_out = _xml_safe(_artifact_text(result, link_base))
    return case


def _run_properties(result: CellResult) -> dict[str, object]:
    report = result.report or {}
    properties: dict[str, object] = {
        "verdict": result.verdict,
        "guest": report.get("guest", ""),
        "accel": report.get("accel", ""),
        "smp": result.cell.smp or "",
        "repeat": result.cell.repeat,
        "attempts": len(result.attempts),
        "signature": report.get("signature") or "",
    }
    ready = ready_seconds(report)
    if ready is not None:
        properties["boot_ready_s"] = ready
    return {name: value for name, value in properties.items() if value not in ("", None)}


def _outcome(kind: type[Failure] | type[Error], result: CellResult) -> Failure | Error:
    outcome = kind(_xml_safe(result.reason[:1000]), result.verdict)
    outcome.text = _xml_safe(_failure_text(result))
    return outcome


def _failure_text(result: CellResult) -> str:
    lines = [f"verdict: {result.verdict}", f"reason: {result.reason}"]
    for step in failing_steps(result.report):
        lines.append(f"step '{step['name']}' {step['status']}: {step.get('reason', '')}")
        if step.get("output"):
            lines += ["  output (tail):", *("    " + line for line in step["output"].splitlines()[-10:])]
    triage = triage_text(result)
    if triage:
        lines += ["", triage]
    console = last_console_lines(result, CONSOLE_LINES)
    if console:
        lines += ["", f"last {len(console)} console lines:", *console]
    return "\n".join(lines)


def _probe_case(result: CellResult, probe: ProbeCase) -> TestCase:
    name = f"{result.cell.title} :: {probe.step} :: {probe.name}"
    case = TestCase(name, f"hil.{result.cell.label}.probe", 0.0)
    for metric, entry in probe.metrics.items():
        case.add_property(metric, _xml_safe(str(entry.get("raw", entry.get("value")))))
        if entry.get("unit"):
            case.add_property(f"{metric}.unit", _xml_safe(str(entry["unit"])))
    if probe.status == CaseStatus.SKIP:
        case.result = [Skipped(_xml_safe(probe.reason))]
    elif probe.status != CaseStatus.PASS:
        failure = Failure(_xml_safe(probe.reason or probe.status), probe.status)
        failure.text = _xml_safe(f"probe case {probe.number} {probe.name}: {probe.status} {probe.reason}")
        case.result = [failure]
    return case


def _artifact_text(result: CellResult, link_base: Path) -> str:
    lines = [f"run folder: {_link(result.report_dir, link_base)}"]
    for label, path in artifact_files(result.report_dir):
        lines.append(f"{label}: {_link(path, link_base)}")
    serial = result.report_dir / "serial.log" if result.report_dir else None
    if serial and serial.is_file():
        lines.append(f"[[ATTACHMENT|{_link(serial, link_base)}]]")
    return "\n".join(lines)


def _link(path: Path | None, base: Path) -> str:
    if path is None:
        return "-"
    relative = os.path.relpath(path.resolve(), base.resolve())
    return str(path.resolve()) if relative.startswith("..") else relative


def _first_start(cells: list[CellResult]) -> str | None:
    starts = [cell.report["started"] for cell in cells if cell.report and cell.report.get("started")]
    return min(starts) if starts else None


def _timestamp(started: str) -> str:
    """JUnit's timestamp is an ISO 8601 date and time without a zone (reports add one: cut it)."""
    return started[:19]


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)
