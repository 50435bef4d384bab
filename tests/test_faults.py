"""A program's fault is an event the run goes on after; a kernel panic, or a fault of a program the guest
cannot go on without, ends it. On a real guest: the reference guest prints the real kernel's exception dumps
(tests/data/redox) over its real serial port, read through a profile that watches for Redox's fault lines.

The dump is unpacked in the guest (gzip, base64), so the typed command line (which the console echoes) holds no
fault line of its own.
"""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import pytest

from hil.guest.profiles import GuestOptions
from hil.guest.profiles.redox import FATAL_PROCESSES, REDOX_CRASH_PATTERNS, REDOX_FAULT_PATTERNS
from hil.guest.profiles.reference import ReferenceProfile
from hil.guest.stages import CrashSeen
from hil.judge import Judge
from hil.results import RunResult, StepStatus, Verdict
from hil.scenario import Step
from hil.session import GuestSession
from hil.steps import run_step

pytestmark = pytest.mark.qemu

DUMP = (Path(__file__).resolve().parent / "data" / "redox" / "kernel-page-fault-null-write.log").read_text()
BOOTSTRAP_DUMP = DUMP[DUMP.index("Page fault") :]
NULLD_DUMP = BOOTSTRAP_DUMP.replace("PID 0, NAME [bootstrap]", "PID 3, NAME /scheme/initfs/bin/nulld")


class RedoxFaultsOnReference(ReferenceProfile):
    """The reference guest, watched for Redox's fault and panic lines."""

    crash_format = "redox"
    crash_patterns = (*ReferenceProfile.crash_patterns, *REDOX_CRASH_PATTERNS)
    fault_patterns = REDOX_FAULT_PATTERNS
    fatal_processes = FATAL_PROCESSES


@pytest.fixture
def session(reference_image, tmp_path: Path):
    with GuestSession(RedoxFaultsOnReference(), GuestOptions(accel="tcg"), tmp_path, snapshot=True) as session:
        session.start()
        yield session


def _print(text: str) -> Step:
    # Compressed: a terminal takes lines of at most 4095 characters.
    packed = base64.b64encode(gzip.compress(text.encode())).decode()
    command = f"echo {packed} | base64 -d | gunzip; echo printed"
    return Step("print a dump", "run", {"run": command, "expect_status": 0, "expect_output": "printed"}, 60)


def test_a_programs_fault_is_recorded_and_the_run_goes_on(session: GuestSession) -> None:
    step = run_step(session, _print(NULLD_DUMP))
    assert step.status == StepStatus.PASS, step.reason  # the fault did not end the command's wait
    [fault] = session.faults
    assert (fault.title, fault.process, fault.mode) == ("Page fault", "nulld", "user")
    assert fault.summary == "Page fault (write to 0x0) in nulld at 0x1100"
    assert fault.signature == "crash:Page fault:user:nulld"
    assert session.run("echo still-here").output == "still-here\n"

    judge = Judge(RunResult("faults", "reference", session.run_dir))
    judge.session, judge.result.steps = session, [step]
    judge.steps_finished(planned=1)
    assert judge.result.verdict == Verdict.CRASH and judge.result.details["signature"] == fault.signature
    assert "nulld" in judge.result.reason and judge.result.faults[0].allowed is False

    allowed = Judge(RunResult("faults", "reference", session.run_dir), allowed_faults=("nulld:Page fault",))
    allowed.session, allowed.result.steps = session, [step]
    allowed.steps_finished(planned=1)
    assert allowed.result.verdict == Verdict.PASS and allowed.result.faults[0].allowed is True


def test_a_fault_of_a_program_the_guest_needs_ends_the_run(session: GuestSession) -> None:
    judge = Judge(RunResult("faults", "reference", session.run_dir))
    judge.session = session
    with pytest.raises(CrashSeen) as caught:
        run_step(session, _print(BOOTSTRAP_DUMP))
    judge.ended_by(caught.value)
    assert judge.result.verdict == Verdict.CRASH and not session.faults
    assert judge.result.details["signature"] == "crash:Page fault:user:bootstrap"
    assert judge.result.details["crash"]["summary"] == "Page fault (write to 0x0) in bootstrap at 0x1100"
