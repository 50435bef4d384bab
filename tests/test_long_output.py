"""Step output of any size: no false hang (a timeout while new lines still arrive fails the step), the
shell survives binary junk, the whole output is kept.

A `run` step's begin and end markers are waited for apart, so however much a command prints between
them, pexpect's bounded search window never has to hold both. report.json keeps the tail; the run folder
keeps every character. The reference guest's serial port moves about 160 KB/s under TCG, which sets the
step timeouts below (10 MB takes about a minute).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.boot import Booter, BootRequest
from hil.guest.profiles import GuestOptions
from hil.results import StepStatus
from hil.scenario import Step
from hil.session import GuestSession
from hil.steps import OUTPUT_KEPT, run_step
from hil.triage.watchdog import CAP_FACTOR

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

TEN_MB = 10_000_000
LINE = "0123456789" * 9 + "abcdefghi"  # 99 characters and a newline: 100 bytes a line


@pytest.fixture(scope="module")
def session(reference_image, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuestSession]:
    run_dir = tmp_path_factory.mktemp("long-output")
    session = Booter().prepare(BootRequest("reference", GuestOptions(), snapshot=True), run_dir)
    with session:
        session.start()
        yield session


def _step(command: str, timeout: float, **params: object) -> Step:
    return Step(command[:30], "run", {"run": command, "expect_status": 0, "expect_output": None, **params}, timeout)


def test_seq_20000_is_no_hang_and_is_kept_whole(session: GuestSession) -> None:
    result = run_step(session, _step("seq 1 20000", 60, expect_output="^20000$"))
    assert result.status == StepStatus.PASS, result.reason
    assert len(result.output) == OUTPUT_KEPT and result.output.endswith("19999\n20000\n")
    kept = (session.run_dir / result.output_file).read_text()
    assert kept.splitlines() == [str(n) for n in range(1, 20001)]


def test_ten_megabytes_of_text(session: GuestSession) -> None:
    result = run_step(session, _step(f"yes {LINE} | head -c {TEN_MB}", 300))
    assert result.status == StepStatus.PASS, result.reason
    kept = (session.run_dir / result.output_file).read_text()
    assert len(kept) == TEN_MB and kept.count(LINE + "\n") == TEN_MB // 100
    assert session.run("echo still-here").output == "still-here\n"


def test_ten_megabytes_of_binary_junk_leave_the_console_working(session: GuestSession) -> None:
    result = run_step(session, _step(f"head -c {TEN_MB} /dev/urandom; echo; echo junk-done", 300))
    assert result.status == StepStatus.PASS, result.reason
    assert result.output.endswith("junk-done\n")
    assert (session.run_dir / result.output_file).stat().st_size > TEN_MB // 2  # control bytes are dropped
    assert session.run("echo still-here").output == "still-here\n"


def test_a_step_that_never_ends_is_a_hang_after_its_timeout(session: GuestSession) -> None:
    result = run_step(session, _step("yes", 5))
    assert result.status == StepStatus.HANG, result.reason
    assert 5 <= result.seconds < 5 * CAP_FACTOR + 5  # "y" lines are not progress: the wait is bounded
    assert result.output_file and Path(session.run_dir / result.output_file).stat().st_size > 0
    assert session.run("echo still-here").output == "still-here\n"


def test_a_command_still_printing_new_lines_at_its_timeout_fails_and_is_no_hang(session: GuestSession) -> None:
    """A slow command is not a stuck guest: new lines up to the end make the timeout a failure of the step,
    with what it printed in the reason, and no hang triage (whose vCPU samples would call it idle: the guest
    waits on its serial port)."""
    result = run_step(session, _step("seq 1 100000000", 5))
    assert result.status == StepStatus.FAIL, result.reason
    assert "did not finish within 5.0 s (still printing:" in result.reason
    assert session.run("echo still-here").output == "still-here\n"


def test_the_serial_log_holds_exactly_the_bytes_the_guest_sent(session: GuestSession) -> None:
    """3 MB of random bytes as fast as the guest can print them: serial.log must hold them unchanged (QEMU's
    own chardev log writes bytes twice when a write to the socket is partial; hil writes what it reads)."""
    digest = session.run("head -c 3000000 /dev/urandom > /tmp/junk; sha256sum /tmp/junk | cut -c1-64").output.strip()
    result = run_step(session, _step("echo JUNK-$((1+1))-BEGIN; cat /tmp/junk; echo; echo JUNK-$((1+1))-END", 300))
    assert result.status == StepStatus.PASS, result.reason
    session.run("true")  # the whole of it has been read from the socket (and so written to the log)
    raw = (session.run_dir / "serial.log").read_bytes()
    start = raw.index(b"JUNK-2-BEGIN\r\n") + len(b"JUNK-2-BEGIN\r\n")
    sent = raw[start : raw.index(b"\r\nJUNK-2-END", start)]
    # The guest's tty turns every \n into \r\n on the way out (onlcr); undoing that gives the file's bytes.
    written = sent.replace(b"\r\n", b"\n")  # (the `echo` after cat ends the data with the \r\n cut above)
    assert hashlib.sha256(written).hexdigest() == digest, f"{len(written)} bytes in serial.log"
