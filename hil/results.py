"""What runs and steps end in: verdicts, step statuses, step and run results, and the exit codes they map to.

The bottom of the house: every other module may import this one, and it imports nothing of hil at run time,
so reports, the runner and the pytest plugin all speak of results in the same typed words.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hil.guest.stages import Timeline
    from hil.qemu.accel import AccelChoice

USAGE_EXIT_CODE = 2


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    CRASH = "crash"
    HANG = "hang"
    INFRA = "infra"

    @classmethod
    def parse(cls, text: object) -> Verdict:
        """A verdict read from a report; anything unknown (or missing) counts as infra, never as a pass."""
        try:
            return cls(str(text))
        except ValueError:
            return cls.INFRA

    @property
    def exit_code(self) -> int:
        return {"pass": 0, "infra": 3}.get(self.value, 1)

    @property
    def is_failure(self) -> bool:
        """The guest's (the kernel's) failure, as opposed to a pass or a problem of the host."""
        return self in (Verdict.FAIL, Verdict.CRASH, Verdict.HANG)

    @property
    def severity(self) -> int:
        """For combining several runs: the worst verdict wins."""
        return list(Verdict).index(self)


class StepStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    HANG = "hang"
    # Cut short by something outside the step (a signal, QEMU exiting, a crash elsewhere, a bug in hil).
    INTERRUPTED = "interrupted"


def signal_exit_code(signum: int) -> int:
    """What a shell reports for a process stopped by `signum`: 128 + N (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + signum


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Terminated(SystemExit):
    """hil was asked to stop by a signal (SIGTERM, SIGHUP): unwinds like SystemExit, exits 128 + N.

    A SystemExit so that code catching Exception does not swallow it; the runner still maps it to a
    verdict before it goes on unwinding.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal_exit_code(signum))
        self.signum = signum

    def __str__(self) -> str:
        return f"terminated by {signal_name(self.signum)}"


@dataclass
class StepResult:
    name: str
    kind: str
    status: StepStatus
    seconds: float = 0.0
    exit_status: int | None = None
    output: str = ""  # its tail when long; the whole of it is in `output_file`
    reason: str = ""
    output_file: str | None = None  # relative to the run folder
    cases: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """One run as it happened; the verdict starts as infra ("did not finish") and is judged at the end."""

    scenario: str
    guest: str
    run_dir: Path
    verdict: Verdict = Verdict.INFRA
    reason: str = "the run did not finish"
    accel: AccelChoice | None = None
    timeline: Timeline | None = None
    steps: list[StepResult] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started_wall: float = field(default_factory=time.time)
    duration: float = 0.0
    kept: dict[str, Any] | None = None
    # A user mistake seen only once the run was under way (a damaged package): infra, yet exit 2, not retried.
    usage_error: bool = False

    def judged(self, verdict: Verdict, reason: str) -> None:
        self.verdict, self.reason = verdict, reason

    @property
    def exit_code(self) -> int:
        return USAGE_EXIT_CODE if self.usage_error else self.verdict.exit_code
