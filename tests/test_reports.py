"""Reports from run sets, without QEMU: JUnit (validated against tests/data/junit.xsd), HTML, terminal summary."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from io import StringIO
from pathlib import Path
from xml.etree import ElementTree

import pytest
import xmlschema
from rich.console import Console as Terminal

from hil.reports import write_reports
from hil.reports.summary import print_summary
from hil.results import Attempt, Cell, CellResult, RunSetResult

SCHEMA = Path(__file__).parent / "data" / "junit.xsd"
STAGES = ["kernel", "userspace", "mounts", "drivers", "network", "sshd", "ready"]


def step(name: str, status: str, kind: str = "run", output: str = "", reason: str = "", cases: list | None = None):
    exit_status = 0 if status == "pass" else 2
    return {"name": name, "kind": kind, "status": status, "seconds": 0.1, "exit_status": exit_status,
            "output": output, "reason": reason, "cases": cases or [], "details": {}}  # fmt: skip


def make_report(scenario: str, verdict: str, reason: str, *, cases: bool = False, stuck: bool = False) -> dict:
    stages = [
        {"name": name, "budget": 30.0, "status": "reached", "seconds": i + 0.5, "line": f"{name} up"}
        for i, name in enumerate(STAGES)
    ]
    report: dict = {
        "scenario": scenario, "guest": "reference", "verdict": verdict, "reason": reason, "accel": "tcg",
        "started": "2026-01-02T03:04:05+0000", "duration_s": 9.5, "stages": stages,
        "steps": [step("kernel answers", "pass", output="Linux")],
    }  # fmt: skip
    if stuck:
        stages[-1].update(status="stuck", seconds=None)
        last_lines = ["hook: waiting forever", "<script>alert(1)</script>"]
        report["hang"] = {"stage": "ready", "waited": 12.0, "budget": 30.0, "last_lines": last_lines}
    if verdict == "fail":
        report["steps"].append(step("a check", "fail", output="ls: /nope: No such file", reason="exit status 2"))
    if cases:
        report["steps"].append(step("io_uring probe", "fail", kind="probe", cases=probe_cases()))
    return report


def probe_cases() -> list[dict]:
    def case(number: int, name: str, status: str = "pass", reason: str = "", **metrics: tuple[float, str]) -> dict:
        values = {key: {"value": v, "unit": unit, "raw": f"{v:g}"} for key, (v, unit) in metrics.items()}
        return {"number": number, "name": name, "status": status, "reason": reason, "metrics": values}

    cases = [case(1, "setup", sq_entries=(8, "count"))]
    for number, depth in enumerate((1, 8, 32), start=2):
        latency = {"lat_p50_us": (100.0 * depth, "us"), "lat_p99_us": (300.0 * depth, "us")}
        cases.append(case(number, f"depth_{depth}", iops=(1000.0 * depth, "ops/s"), **latency))
    cases.append(case(5, "cancel", "fail", "cancel returned -22"))
    cases.append(case(6, "linked", "skip", "not supported"))
    return cases


def run_folder(root: Path, name: str, report: dict | None, serial: bytes = b"") -> Path:
    folder = root / "runs" / name
    folder.mkdir(parents=True)
    if report is not None:
        (folder / "report.json").write_text(json.dumps(report))
    (folder / "serial.log").write_bytes(serial or b"Linux version 6.1\r\n\x1b[1mbold\x1b[0m line\r\nlast words\r\n")
    (folder / "argv.txt").write_text("qemu-system-x86_64 -smp 2\n")
    (folder / "disk-overlay.qcow2").write_bytes(b"QFI")  # large and meaningless alone: never linked
    return folder


@pytest.fixture
def runset(tmp_path: Path) -> RunSetResult:
    """Every verdict once, one infra run that was retried, probe cases with depths, hostile console bytes."""
    root = tmp_path / "set"

    def cell(label: str, smp: int, verdict: str, reason: str, **kw: object) -> CellResult:
        report = make_report(label, verdict, reason, **kw)  # type: ignore[arg-type]
        folder = run_folder(root, f"{label}-smp{smp}", report, b"boot\r\nbad byte \x01\x1f here\r\nthe end\r\n")
        return CellResult(Cell(label, label, smp), [Attempt(folder, verdict, reason, 0, 9.5)], report)

    crashed = cell("xhci-storage", 2, "crash", "crash during step 'unplug': Kernel panic - not syncing")
    assert crashed.report_dir is not None
    (crashed.report_dir / "crash-report.txt").write_text("crash: Kernel panic\n  #0 xhci_ring_cmd_db+0x12\n")
    crashed.report["signature"] = "crash:Kernel panic:xhci_ring_cmd_db"
    retried_first = run_folder(root, "boot-smp4-try1", None)
    retried = cell("boot", 4, "pass", "all steps passed")
    retried.attempts.insert(0, Attempt(retried_first, "infra", "QEMU exited with status 1 while starting", 3, 0.4))
    cells = [
        cell("boot", 1, "pass", "all steps passed"),
        retried,
        cell("boot", 2, "hang", "stuck before stage 'ready'", stuck=True),
        cell("nvme-uring", 2, "fail", "step 'io_uring probe': case cancel failed", cases=True),
        cell("nvme-uring", 4, "pass", "all steps passed", cases=True),
        crashed,
        cell("e1000-net", 2, "infra", "QEMU exited with status 1 while starting\n  argv: qemu ...\n  QEMU said: no"),
    ]
    return RunSetResult("gate", root, cells, "2026-01-02T03:04:05+0000", 42.0, 2, 1)


def test_junit_validates_and_tells_kernel_failures_from_infra(runset: RunSetResult, tmp_path: Path) -> None:
    path = write_reports(runset, junit=tmp_path / "out" / "junit.xml")["junit"]
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(path))
    root = ElementTree.parse(path).getroot()
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    assert list(suites) == ["boot", "nvme-uring", "xhci-storage", "e1000-net"]
    runs = {case.get("name"): case for case in root.iter("testcase") if "::" not in case.get("name", "")}
    assert set(runs) == {"boot[smp=1,run=1]", "boot[smp=4,run=1]", "boot[smp=2,run=1]", "nvme-uring[smp=2,run=1]",
                         "nvme-uring[smp=4,run=1]", "xhci-storage[smp=2,run=1]", "e1000-net[smp=2,run=1]"}  # fmt: skip
    for name, kind in (("boot[smp=2,run=1]", "hang"), ("xhci-storage[smp=2,run=1]", "crash")):
        failure = runs[name].find("failure")
        assert failure is not None and failure.get("type") == kind and runs[name].find("error") is None
    error = runs["e1000-net[smp=2,run=1]"].find("error")
    assert error is not None and error.get("type") == "infra" and "QEMU said" in (error.text or "")
    hang_text = runs["boot[smp=2,run=1]"].find("failure").text or ""
    assert "last 2 console lines" in hang_text and "hook: waiting forever" in hang_text
    fail_text = runs["nvme-uring[smp=2,run=1]"].find("failure").text or ""
    assert "step 'a check' fail: exit status 2" in fail_text and "No such file" in fail_text
    crash_text = runs["xhci-storage[smp=2,run=1]"].find("failure").text or ""
    assert "bad byte \ufffd\ufffd here" in crash_text and "#0 xhci_ring_cmd_db+0x12" in crash_text
    crash_properties = {p.get("name"): p.get("value") for p in runs["xhci-storage[smp=2,run=1]"].iter("property")}
    assert crash_properties["signature"] == "crash:Kernel panic:xhci_ring_cmd_db"
    rerun = runs["boot[smp=4,run=1]"].find("rerunError")
    assert rerun is not None and rerun.get("type") == "infra" and runs["boot[smp=4,run=1]"].find("failure") is None
    assert root.get("tests") == "19" and root.get("failures") == "5" and root.get("errors") == "1"


def test_junit_probe_cases_carry_their_metrics(runset: RunSetResult, tmp_path: Path) -> None:
    path = write_reports(runset, junit=tmp_path / "junit.xml")["junit"]
    cases = {c.get("name"): c for c in ElementTree.parse(path).getroot().iter("testcase")}
    depth = cases["nvme-uring[smp=2,run=1] :: io_uring probe :: depth_8"]
    properties = {p.get("name"): p.get("value") for p in depth.iter("property")}
    assert properties == {"iops": "8000", "iops.unit": "ops/s", "lat_p50_us": "800", "lat_p50_us.unit": "us",
                          "lat_p99_us": "2400", "lat_p99_us.unit": "us"}  # fmt: skip
    cancel = cases["nvme-uring[smp=2,run=1] :: io_uring probe :: cancel"].find("failure")
    assert cancel is not None and cancel.get("message") == "cancel returned -22"
    assert cases["nvme-uring[smp=2,run=1] :: io_uring probe :: linked"].find("skipped") is not None


def test_junit_system_out_links_artifacts_relative_to_the_job_folder(
    runset: RunSetResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_reports(runset, junit=Path("reports/junit.xml"))["junit"]
    case = next(c for c in ElementTree.parse(path).getroot().iter("testcase") if c.get("name") == "boot[smp=1,run=1]")
    out = case.findtext("system-out") or ""
    assert "serial log: set/runs/boot-smp1/serial.log" in out
    assert "[[ATTACHMENT|set/runs/boot-smp1/serial.log]]" in out
    assert "qcow2" not in out
    for line in out.splitlines():
        if ": " in line and not line.startswith("[["):
            assert (tmp_path / line.split(": ", 1)[1]).exists(), line


class LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)


def test_html_links_every_artifact_relatively_and_draws_the_plots(runset: RunSetResult, tmp_path: Path) -> None:
    index = write_reports(runset, html=tmp_path / "set" / "html")["html"]
    page = index.read_text()
    collector = LinkCollector()
    collector.feed(page)
    files = [link for link in collector.links if not link.startswith("#")]
    assert files and all(not link.startswith(("/", "file:", "http")) for link in files)
    for link in files:
        assert (index.parent / link).exists(), link
    for folder in (cell.report_dir for cell in runset.cells):
        assert folder is not None
        for artifact in ("serial.log", "argv.txt"):
            assert any((index.parent / link).resolve() == (folder / artifact).resolve() for link in files)
    plots = [link for link in files if link.endswith(".png")]
    assert {"plots/overview.png", "plots/boot-smp2-r1-stages.png", "plots/nvme-uring-smp2-r1-depths.png",
            "plots/nvme-uring-compare.png"} <= set(plots)  # fmt: skip
    assert all((index.parent / plot).read_bytes().startswith(b"\x89PNG") for plot in plots)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # console text is escaped
    assert "FAIL" in page and "cancel returned -22" in page and "#0 xhci_ring_cmd_db+0x12" in page


def test_html_works_for_a_single_run_in_its_own_folder(tmp_path: Path) -> None:
    folder = run_folder(tmp_path, "20260102-boot-abc", make_report("boot", "pass", "all steps passed"))
    result = RunSetResult.from_run_dirs([folder], name="single")
    assert result.cells[0].cell.title == "boot[run=1]" and result.verdict == "pass" and result.exit_code == 0
    index = write_reports(result, html=folder / "html")["html"]
    assert 'href="../serial.log"' in index.read_text()


def test_terminal_summary_lists_every_run_and_counts(runset: RunSetResult) -> None:
    out = StringIO()
    print_summary(Terminal(file=out, width=200, color_system=None), runset)
    text = out.getvalue()
    assert "boot[smp=2,run=1]" in text and "xhci-storage[smp=2,run=1]" in text  # brackets survive rich markup
    assert "QEMU said" not in text  # only the first line of a long reason
    assert re.search(r"verdict: fail\s+3 pass, 1 fail, 1 crash, 1 hang, 1 infra of 7 runs", text), text


@pytest.mark.parametrize(
    ("verdicts", "verdict", "code"),
    [(["pass", "pass"], "pass", 0), (["pass", "infra"], "infra", 3), (["infra", "hang"], "fail", 1),
     (["crash"], "fail", 1), (["fail", "pass"], "fail", 1)],
)  # fmt: skip
def test_run_set_exit_code(tmp_path: Path, verdicts: list[str], verdict: str, code: int) -> None:
    cells = [CellResult(Cell("s", "s", None, i), [Attempt(tmp_path, v, "", 0, 1.0)]) for i, v in enumerate(verdicts)]
    result = RunSetResult("x", tmp_path, cells)
    assert (result.verdict, result.exit_code) == (verdict, code)


def test_runset_json_round_trips(runset: RunSetResult) -> None:
    path = runset.write()
    data = json.loads(path.read_text())
    assert data["verdict"] == "fail" and data["exit_code"] == 1 and data["counts"]["infra"] == 1
    retried = next(cell for cell in data["cells"] if cell["id"] == "boot-smp4-r1")
    assert [a["verdict"] for a in retried["attempts"]] == ["infra", "pass"]
    assert retried["report_dir"] == "runs/boot-smp4" and retried["report"]["verdict"] == "pass"
    loaded = RunSetResult.load(path.parent)
    assert [(c.cell, c.verdict, c.report_dir) for c in loaded.cells] == [
        (c.cell, c.verdict, c.report_dir) for c in runset.cells
    ]
