"""The progress watchdog: what counts as progress, and waits that end on its absence (no QEMU).

The guest is played by a thread appending lines to a file standing in for QEMU's serial log; the console
never matches, so every wait ends by the watchdog's rules alone.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hil.triage.watchdog import CAP_FACTOR, NoProgress, ProgressWatch, WatchedConsole

KERNEL_LINE = r"^\[\s*\d+\.\d+\] "


class SilentConsole:
    """A console on which nothing the caller waits for ever appears."""

    def __init__(self) -> None:
        self.activity = "the console"

    def expect(self, patterns: list[re.Pattern[str]], timeout: float) -> tuple[int, re.Match[str]]:
        time.sleep(timeout)
        raise TimeoutError("nothing")

    def recent_lines(self, count: int = 40) -> list[str]:
        return []


def _guest(log: Path, lines: Callable[[int], str], count: int, every: float) -> threading.Thread:
    def write() -> None:
        for index in range(count):
            with open(log, "a") as stream:
                stream.write(lines(index) + "\r\n")
            time.sleep(every)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def _wait(console: WatchedConsole, budget: float) -> tuple[float, NoProgress]:
    started = time.monotonic()
    with pytest.raises(NoProgress) as caught:
        console.expect([re.compile("never")], budget)
    return time.monotonic() - started, caught.value


def test_heartbeats_keep_a_wait_alive_past_its_budget(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.touch()
    console = WatchedConsole(SilentConsole(), ProgressWatch(log))
    _guest(log, lambda i: f"# heartbeat depth_8 {i * 100}", count=8, every=0.25)  # ~2 s of heartbeats
    waited, stall = _wait(console, 0.6)
    assert waited >= 2.0  # far past 0.6 s, and past CAP_FACTOR x 0.6 s too: heartbeats are not capped
    assert stall.stall.idle >= 0.6 and not stall.stall.capped
    assert stall.stall.last_progress_line == "# heartbeat depth_8 700"


def test_a_repeated_line_is_not_progress(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.touch()
    console = WatchedConsole(SilentConsole(), ProgressWatch(log, [KERNEL_LINE]))
    _guest(log, lambda i: f"[ {i}.{i:06d}] nvme nvme0: I/O timeout, reset controller", count=12, every=0.15)
    waited, stall = _wait(console, 0.8)
    assert waited < 1.6  # the first line was progress; its repeats (timestamps aside) were not
    assert not stall.stall.capped


def test_log_progress_extends_a_wait_only_up_to_the_cap(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.touch()
    console = WatchedConsole(SilentConsole(), ProgressWatch(log, [KERNEL_LINE]))
    _guest(log, lambda i: f"[    {i}.000000] probing device {i}", count=40, every=0.1)
    waited, stall = _wait(console, 0.5)
    assert 0.5 * CAP_FACTOR - 0.1 <= waited < 0.5 * CAP_FACTOR + 0.8
    assert stall.stall.capped and "past" in str(stall)


def test_without_progress_a_wait_ends_at_its_budget(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    log.touch()
    console = WatchedConsole(SilentConsole(), ProgressWatch(log, [KERNEL_LINE]))
    _guest(log, lambda i: f"noise {i}", count=10, every=0.05)  # output, but nothing the profile calls progress
    waited, stall = _wait(console, 0.4)
    assert 0.4 <= waited < 0.9 and stall.stall.last_progress_line == ""


def test_a_zero_budget_still_looks_once(tmp_path: Path) -> None:
    class Matching(SilentConsole):
        def expect(self, patterns: list[re.Pattern[str]], timeout: float) -> tuple[int, re.Match[str]]:
            match = patterns[0].search("READY")
            assert match is not None
            return 0, match

    console = WatchedConsole(Matching(), ProgressWatch(tmp_path / "absent.log"))
    index, match = console.expect([re.compile("READY")], 0.0)
    assert index == 0 and match.group(0) == "READY"


def test_progress_rules(tmp_path: Path) -> None:
    watch = ProgressWatch(tmp_path / "absent.log", [r"^hil-init: "])
    assert watch.feed_line("hil-init: mounted")
    assert not watch.feed_line("hil-init: mounted")  # the same line again
    assert watch.feed_line("# heartbeat nop_batch 10") and watch.feed_line("# heartbeat nop_batch 20")
    assert not watch.feed_line("# heartbeat nop_batch 20")
    assert watch.feed_line("ok 3 out_of_order") and watch.feed_line("not ok 4 cancel # timed out after 5 s")
    assert not watch.feed_line("random chatter")
    assert watch.last_heartbeat_at is not None and watch.progress_count == 5


def test_serial_log_is_read_incrementally_with_escape_sequences_and_split_lines(tmp_path: Path) -> None:
    log = tmp_path / "serial.log"
    watch = ProgressWatch(log, [r"^hil-init: "])
    log.write_bytes(b"\x1b[1mhil-init: mou")
    assert not watch.poll()  # half a line is not a line yet
    with open(log, "ab") as stream:
        stream.write(b"nted\x1b[0m\r\nhil-init: modules loaded\r\n")
    assert watch.poll() and watch.last_progress_line == "hil-init: modules loaded"
    assert not watch.poll()


def test_attribute_writes_reach_the_console_inside(tmp_path: Path) -> None:
    inner = SilentConsole()
    console = WatchedConsole(inner, ProgressWatch(tmp_path / "absent.log"))
    console.activity = "step 'probe'"
    assert inner.activity == "step 'probe'" and console.activity == "step 'probe'"
    assert console.recent_lines() == [] and console.inner is inner


def test_new_lines_up_to_the_end_make_a_stall_printing_not_stuck(tmp_path: Path) -> None:
    """Lines no progress pattern knows (a command's own output) do not extend the wait, yet they say the guest
    was busy when it ran out: Stall.printing, and its why counts them."""
    log = tmp_path / "serial.log"
    log.touch()
    console = WatchedConsole(SilentConsole(), ProgressWatch(log, [KERNEL_LINE]))
    _guest(log, lambda i: f"line {i}", count=40, every=0.05)  # 2 s of distinct lines, past the 1 s budget
    waited, stall = _wait(console, 1.0)
    assert waited < 1.0 * CAP_FACTOR
    assert stall.stall.printing and stall.stall.output_lines >= 10
    assert "still printing" in stall.stall.why and "line " in stall.stall.why


@pytest.mark.parametrize("lines", [lambda i: "the same error again", lambda i: ""])
def test_one_line_repeated_or_silence_is_not_printing(tmp_path: Path, lines: Callable[[int], str]) -> None:
    log = tmp_path / "serial.log"
    log.touch()
    console = WatchedConsole(SilentConsole(), ProgressWatch(log, [KERNEL_LINE]))
    _guest(log, lines, count=40, every=0.05)
    _, stall = _wait(console, 1.0)
    assert not stall.stall.printing, stall.stall.as_dict()
    assert "no progress" in stall.stall.why
