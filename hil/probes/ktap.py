"""A streaming parser of the probes' KTAP-like output (the format is in PROTOCOL.md next to this file).

Lines are fed one at a time as the serial console delivers them; lines that are not part of the protocol (kernel
log, shell echo) are skipped. The parser never raises: anything it cannot make sense of becomes an entry in
`ProbeReport.errors`, and cases the output never reached become results with status "error".
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from typing import Any

from hil.results import CaseStatus

TRUNCATED_REASON = "missing from output (truncated?)"
ABORTED_REASON = "missing from output (probe aborted)"

_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HEADER = re.compile(r"KTAP version (\d+)\s*$")
_PLAN = re.compile(r"^1\.\.(\d+)\s*(?:#.*)?$")
_RESULT_START = re.compile(r"^(?:not )?ok\s+\d")
_RESULT = re.compile(r"^(?P<status>ok|not ok)\s+(?P<number>\d+)(?=\s|#|$)(?P<rest>.*)$")
_SKIP = re.compile(r"^SKIP\b\s*(?P<reason>.*)$", re.IGNORECASE)
_METRIC = re.compile(r"^# metric (?P<case>[^\s.=]+)\.(?P<key>[^\s=]+)=(?P<value>\S*)(?:\s+(?P<unit>.*))?$")
_NUMBER = re.compile(r"^[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)$")
_HEARTBEAT = re.compile(r"^# heartbeat (?P<case>\S+) (?P<count>\d+)\s*$")
_ABORT = re.compile(r"^(?:# probe aborted\b|Bail out!)")
_PROBE_INFO = re.compile(r"^# probe (?P<program>\S+) (?P<version>\S+) (?P<os>\S+)\s*$")
_CASE_NAMES = re.compile(r"^# cases\s+(?P<names>.+)$")

SUPPORTED_VERSION = 1
# Protocol lines are short; longer ones are console garbage, and capping them keeps every regex cheap.
MAX_LINE_LENGTH = 4096
# A plan beyond this is corrupt output, not a probe: filling in that many missing cases would never end.
MAX_PLAN = 10_000


@dataclass(frozen=True)
class Metric:
    """One `# metric case.key=value unit` line; `raw` is the value as printed (e.g. "0x3fff")."""

    value: float
    unit: str
    raw: str

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "unit": self.unit, "raw": self.raw}


@dataclass
class CaseResult:
    number: int
    name: str
    status: CaseStatus
    reason: str = ""
    metrics: dict[str, Metric] = field(default_factory=dict)
    diagnostics: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "metrics": {key: metric.as_dict() for key, metric in self.metrics.items()},
            "diagnostics": list(self.diagnostics),
        }


@dataclass(frozen=True)
class ProbeInfo:
    """The `# probe PROGRAM VERSION OS` line."""

    program: str
    version: str
    os: str


@dataclass
class ProbeReport:
    plan: int | None
    cases: list[CaseResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    probe: ProbeInfo | None = None
    diagnostics: list[str] = field(default_factory=list)
    heartbeats: dict[str, int] = field(default_factory=dict)
    aborted: bool = False
    header_seen: bool = False

    @property
    def ok(self) -> bool:
        """A complete run without parse errors in which every case passed or was skipped."""
        if not self.header_seen or self.plan is None or self.errors or self.aborted:
            return False
        done = (CaseStatus.PASS, CaseStatus.SKIP)
        return len(self.cases) >= self.plan and all(case.status in done for case in self.cases)

    def case(self, name: str) -> CaseResult | None:
        return next((case for case in self.cases if case.name == name), None)

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(map(str, CaseStatus), 0)
        for case in self.cases:
            counts[case.status] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        probe = None if self.probe is None else vars(self.probe).copy()
        return {
            "ok": self.ok,
            "plan": self.plan,
            "probe": probe,
            "aborted": self.aborted,
            "summary": self.summary(),
            "cases": [case.as_dict() for case in self.cases],
            "errors": list(self.errors),
            "diagnostics": list(self.diagnostics),
            "heartbeats": dict(self.heartbeats),
        }


def parse_metric_value(raw: str) -> float | None:
    """A metric's value as a float, or None when it is not a finite decimal or 0x-hexadecimal number."""
    if not _NUMBER.match(raw):
        return None
    sign = -1.0 if raw.startswith("-") else 1.0
    digits = raw.lstrip("+-")
    value = float(int(digits, 16)) if digits[:2].lower() == "0x" else float(digits)
    value *= sign
    return value if math.isfinite(value) else None


def _clean(line: str) -> str:
    """Drops escape sequences, carriage returns and other control characters the console adds."""
    return _CONTROL_CHARS.sub("", _ANSI_ESCAPE.sub("", line)).rstrip()


class ProbeParser:
    """Feed it lines with `feed()`; `finish()` gives the report (and may be called again as more lines come)."""

    def __init__(self) -> None:
        self._line_number = 0
        self._started = False
        self._ended = False
        self._report = ProbeReport(plan=None)
        self._case_names: list[str] = []
        self._current: CaseResult | None = None
        self._pending_metrics: dict[str, dict[str, Metric]] = {}
        self._seen_numbers: set[int] = set()
        self._last_number = 0
        self._plan_rejected = False

    def feed(self, line: str | bytes) -> None:
        """Takes one console line (several, if it holds newlines). Never raises."""
        try:
            text = line.decode("utf-8", "replace") if isinstance(line, bytes | bytearray) else str(line)
            for part in text.splitlines() or [""]:
                self._line_number += 1
                self._feed_line(_clean(part))
        except Exception as exc:  # a parser bug must not take the run down; report it with the input instead
            self._error(f"internal parser error on {line!r}: {exc!r}")

    @property
    def complete(self) -> bool:
        """The run is over: every planned case reported, or the probe aborted (for streaming readers)."""
        plan = self._report.plan
        return self._ended or (plan is not None and self._last_number >= plan)

    def finish(self) -> ProbeReport:
        """The report for everything fed so far, with missing cases filled in. Never raises."""
        try:
            return self._build_report()
        except Exception as exc:  # see feed()
            return ProbeReport(plan=None, errors=[f"internal parser error while finishing: {exc!r}"])

    # ---- line dispatch --------------------------------------------------------------------------------------

    def _feed_line(self, line: str) -> None:
        if len(line) > MAX_LINE_LENGTH:
            return
        header = _HEADER.search(line)
        if header:
            self._on_header(int(header.group(1)))
            return
        if not self._started or self._ended:
            return
        if _ABORT.match(line):
            self._on_abort()
        elif plan := _PLAN.match(line):
            self._on_plan(int(plan.group(1)))
        elif _RESULT_START.match(line):
            self._on_result(line)
        elif line == "#" or line.startswith("# "):
            self._on_comment(line)

    def _error(self, message: str) -> None:
        self._report.errors.append(f"line {self._line_number}: {message}")

    def _on_header(self, version: int) -> None:
        if self._started:
            if not self._ended:
                self._error("a second 'KTAP version' header: output of two runs is mixed; the rest is ignored")
                self._ended = True
            return
        self._started = True
        self._report.header_seen = True
        if version != SUPPORTED_VERSION:
            self._error(f"KTAP version {version}; this parser reads version {SUPPORTED_VERSION}")

    def _on_abort(self) -> None:
        self._report.aborted = True
        self._ended = True
        running = f" during case {self._current.number} {self._current.name}" if self._current else ""
        self._error(f"probe aborted{running}")

    def _on_plan(self, count: int) -> None:
        if self._report.plan is not None or self._plan_rejected:
            self._error(f"a second plan line 1..{count} ignored")
            return
        if count > MAX_PLAN:
            self._error(f"plan 1..{count} is beyond {MAX_PLAN} cases: corrupt output, plan ignored")
            self._plan_rejected = True
            return
        self._report.plan = count
        if self._last_number > count:
            self._error(f"plan 1..{count} is smaller than the {self._last_number} cases already reported")

    # ---- results ---------------------------------------------------------------------------------------------

    def _on_result(self, line: str) -> None:
        match = _RESULT.match(line)
        if not match:
            self._error(f"malformed result line: {line!r}")
            return
        number = int(match.group("number"))
        name_part, _, directive = match.group("rest").partition("#")
        name = name_part.strip().removeprefix("- ").strip()
        if name == "-":
            name = ""
        if not name:
            self._error(f"case {number} has no name")
            name = self._expected_name(number) or f"case_{number}"
        self._check_number(number, name)
        status, reason = _status_and_reason(match.group("status"), directive)
        case = CaseResult(number=number, name=name, status=status, reason=reason)
        case.metrics.update(self._pending_metrics.pop(name, {}))
        self._report.cases.append(case)
        self._current = case
        self._seen_numbers.add(number)
        self._last_number = number

    def _expected_name(self, number: int) -> str | None:
        if 1 <= number <= len(self._case_names):
            return self._case_names[number - 1]
        return None

    def _check_number(self, number: int, name: str) -> None:
        plan = self._report.plan
        if number in self._seen_numbers:
            self._error(f"case {number} {name} reported twice")
        elif number != self._last_number + 1:
            self._error(f"case {number} {name} out of sequence (expected case {self._last_number + 1})")
        if plan is not None and number > plan:
            self._error(f"case {number} {name} is beyond the plan 1..{plan}")
        expected = self._expected_name(number)
        if expected is not None and expected != name:
            self._error(f"case {number} is named {name!r} but '# cases' lists {expected!r}")

    # ---- comments: metrics, heartbeats, preamble and diagnostics ---------------------------------------------

    def _on_comment(self, line: str) -> None:
        if line.startswith("# metric"):
            self._on_metric(line)
        elif heartbeat := _HEARTBEAT.match(line):
            self._report.heartbeats[heartbeat.group("case")] = int(heartbeat.group("count"))
        elif self._current is None and self._on_preamble(line):
            return
        else:
            self._add_diagnostic(line[2:])

    def _on_preamble(self, line: str) -> bool:
        """Handles `# probe` and `# cases` before the first result; False for a plain diagnostic."""
        if (info := _PROBE_INFO.match(line)) and self._report.probe is None:
            self._report.probe = ProbeInfo(info.group("program"), info.group("version"), info.group("os"))
            return True
        if (names := _CASE_NAMES.match(line)) and not self._case_names:
            self._case_names = names.group("names").split()
            plan = self._report.plan
            if plan is not None and len(self._case_names) != plan:
                self._error(f"'# cases' lists {len(self._case_names)} names but the plan is 1..{plan}")
            return True
        return False

    def _add_diagnostic(self, text: str) -> None:
        target = self._current.diagnostics if self._current else self._report.diagnostics
        target.append(text)

    def _on_metric(self, line: str) -> None:
        match = _METRIC.match(line)
        if not match:
            self._error(f"malformed metric line: {line!r}")
            return
        case_name, key, raw = match.group("case"), match.group("key"), match.group("value")
        value = parse_metric_value(raw)
        if value is None:
            self._error(f"metric {case_name}.{key} has an unparsable value {raw!r}")
            return
        metric = Metric(value=value, unit=(match.group("unit") or "").strip(), raw=raw)
        case = self._latest_case(case_name)
        metrics = case.metrics if case else self._pending_metrics.setdefault(case_name, {})
        if key in metrics:
            self._error(f"metric {case_name}.{key} reported twice; the later value is kept")
        metrics[key] = metric

    def _latest_case(self, name: str) -> CaseResult | None:
        return next((case for case in reversed(self._report.cases) if case.name == name), None)

    # ---- the report ------------------------------------------------------------------------------------------

    def _build_report(self) -> ProbeReport:
        report = copy.deepcopy(self._report)
        if not report.header_seen:
            report.errors.append("no 'KTAP version 1' header: the probe did not start or its output was lost")
            return report
        if report.plan is None:
            if not self._plan_rejected:
                report.errors.append("no plan line (1..N) after the header")
        else:
            self._add_missing_cases(report, report.plan)
        for case_name, metrics in self._pending_metrics.items():
            keys = ", ".join(sorted(metrics))
            report.errors.append(f"metrics for case {case_name!r} that never reported a result: {keys}")
        report.cases.sort(key=lambda case: case.number)
        return report

    def _add_missing_cases(self, report: ProbeReport, plan: int) -> None:
        missing = [number for number in range(1, plan + 1) if number not in self._seen_numbers]
        if not missing:
            return
        reason = ABORTED_REASON if report.aborted else TRUNCATED_REASON
        names = []
        for number in missing:
            name = self._expected_name(number) or f"case_{number}"
            names.append(name)
            case = CaseResult(number=number, name=name, status=CaseStatus.ERROR, reason=reason)
            if name in report.heartbeats:
                case.diagnostics.append(f"last heartbeat: {report.heartbeats[name]}")
            report.cases.append(case)
        report.errors.append(f"{len(missing)} of {plan} cases {reason}: {', '.join(names)}")


def _status_and_reason(word: str, directive: str) -> tuple[CaseStatus, str]:
    text = directive.strip()
    skip = _SKIP.match(text)
    if skip:
        return CaseStatus.SKIP, skip.group("reason").strip()
    return (CaseStatus.PASS if word == "ok" else CaseStatus.FAIL), text


def parse_text(text: str | bytes) -> ProbeReport:
    """Parses a whole captured output at once."""
    parser = ProbeParser()
    parser.feed(text)
    return parser.finish()
