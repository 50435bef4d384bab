"""The stage walker's logic, fed scripted console text (pure logic: no QEMU involved)."""

import re
import time

import pytest

from hil.guest.stages import CrashSeen, Stage, StageTimeout, walk_stages

STAGES = (Stage("kernel", r"Linux version", 5), Stage("init", r"Run /init", 5), Stage("ready", r"^READY$", 0.3))


class ScriptedConsole:
    """Returns the earliest match among the patterns in a fixed text, consuming it like pexpect."""

    def __init__(self, text: str) -> None:
        self.buffer = text

    def expect(self, patterns: list[re.Pattern[str]], timeout: float) -> tuple[int, re.Match[str]]:
        found = [(m.start(), i, m) for i, p in enumerate(patterns) if (m := p.search(self.buffer))]
        if not found:
            time.sleep(timeout)
            raise TimeoutError("no match")
        _, index, match = min(found, key=lambda item: (item[0], item[1]))
        self.buffer = self.buffer[match.end() :]
        return index, match

    def recent_lines(self, count: int = 40) -> list[str]:
        return ["last line"]


def test_all_stages_reached_in_order() -> None:
    timeline = walk_stages(ScriptedConsole("Linux version 6\nRun /init as init\nREADY\n"), STAGES, time.monotonic())
    assert [m.status for m in timeline.marks] == ["reached"] * 3
    assert timeline.mark("init").line == "Run /init as init"


def test_a_later_stage_seen_first_marks_the_skipped_one_missed() -> None:
    timeline = walk_stages(ScriptedConsole("Linux version 6\nREADY\n"), STAGES, time.monotonic())
    assert [m.status for m in timeline.marks] == ["reached", "missed", "reached"]


def test_hang_names_the_stage_and_keeps_the_partial_timeline() -> None:
    with pytest.raises(StageTimeout) as caught:
        walk_stages(ScriptedConsole("Linux version 6\nRun /init\n"), STAGES, time.monotonic())
    assert caught.value.stage == "ready"
    assert [m.status for m in caught.value.timeline.marks] == ["reached", "reached", "stuck"]


def test_budgets_scale_with_the_factor() -> None:
    started = time.monotonic()
    with pytest.raises(StageTimeout) as caught:
        walk_stages(ScriptedConsole("Linux version\nRun /init\n"), STAGES, started, factor=2.0)
    assert caught.value.budget == pytest.approx(0.6)
    assert caught.value.waited >= 0.6


def test_crash_pattern_ends_the_walk() -> None:
    text = "Linux version 6\nKernel panic - not syncing: boom\n"
    with pytest.raises(CrashSeen) as caught:
        walk_stages(ScriptedConsole(text), STAGES, time.monotonic(), crash_patterns=(r"Kernel panic",))
    assert caught.value.stage == "stage 'init'"
    assert "boom" in caught.value.line


class ArrivingConsole(ScriptedConsole):
    """Text arrives in pieces, one more piece before each search, as serial output does."""

    def __init__(self, pieces: list[str]) -> None:
        super().__init__("")
        self.pieces = pieces

    def expect(self, patterns: list[re.Pattern[str]], timeout: float) -> tuple[int, re.Match[str]]:
        while self.pieces:
            self.buffer += self.pieces.pop(0)
            found = [p.search(self.buffer) for p in patterns]
            if any(found):
                break
        return super().expect(patterns, timeout)


def test_a_stage_line_is_kept_whole_even_when_it_arrives_in_pieces() -> None:
    stages = (Stage("network", r"network \S+", 5), Stage("ready", r"^READY$", 5))
    console = ArrivingConsole(["boot\nnetwork eth0", " 10.0.2.15\nmore\n", "READY\nafter\n"])
    timeline = walk_stages(console, stages, time.monotonic())
    assert timeline.mark("network").line == "network eth0 10.0.2.15"
    assert timeline.mark("ready").line == "READY"


def test_a_prompt_stage_needs_no_line_end() -> None:
    stages = (Stage("login", r"login: ", 5, whole_line=False),)
    timeline = walk_stages(ScriptedConsole("boot\nredox login: "), stages, time.monotonic())
    assert timeline.mark("login").line == "redox login:"
