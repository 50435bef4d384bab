"""Boot stages: named console patterns with time budgets, walked in order into a timeline.

A stage's budget counts from the moment the previous stage was reached (the first from QEMU's start), and
every budget is multiplied by one timeout factor. Seeing a later stage's pattern first marks the skipped
ones as missed instead of waiting on them; a crash pattern ends the walk at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Stage:
    name: str
    pattern: str
    budget: float
    description: str = ""
    # A stage is reached when its line is complete, so the timeline keeps the whole line (a pattern like
    # `network \S+` must not match "network eth0" before " 10.0.2.15" arrives). Prompts end no line.
    whole_line: bool = True

    def compiled(self) -> re.Pattern[str]:
        pattern = f"(?:{self.pattern})[^\n]*\n" if self.whole_line else self.pattern
        return re.compile(pattern, re.MULTILINE)


@dataclass
class StageMark:
    """Where one stage stands in a run."""

    name: str
    budget: float
    status: str = "pending"  # pending | reached | missed | stuck
    seconds: float | None = None
    line: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Timeline:
    """The stages of one boot, with seconds since QEMU started."""

    started_at: float
    marks: list[StageMark] = field(default_factory=list)

    def mark(self, name: str) -> StageMark:
        return next(m for m in self.marks if m.name == name)

    def reached(self) -> list[StageMark]:
        return [m for m in self.marks if m.status == "reached"]

    def as_list(self) -> list[dict[str, object]]:
        return [m.as_dict() for m in self.marks]


class StageTimeout(Exception):
    """No progress to the next stage within its budget: the guest hangs in `stage`."""

    def __init__(self, stage: str, waited: float, budget: float, last_lines: list[str], timeline: Timeline) -> None:
        self.stage = stage
        self.timeline = timeline
        self.waited = waited
        self.budget = budget
        self.last_lines = last_lines
        super().__init__(f"stuck before stage '{stage}': no match within {waited:.1f} s (budget {budget:.1f} s)")


class CrashSeen(Exception):
    """A crash pattern of the guest profile appeared on the console."""

    def __init__(
        self, pattern: str, line: str, stage: str, last_lines: list[str], timeline: Timeline | None = None
    ) -> None:
        self.pattern = pattern
        self.timeline = timeline
        self.line = line
        self.stage = stage
        self.last_lines = last_lines
        super().__init__(f"crash during {stage}: {line.strip()}")


class ExpectingConsole(Protocol):
    def expect(self, patterns: list[re.Pattern[str]], timeout: float) -> tuple[int, re.Match[str]]: ...

    def recent_lines(self, count: int = 40) -> list[str]: ...


def walk_stages(
    console: ExpectingConsole,
    stages: tuple[Stage, ...],
    started_at: float,
    *,
    factor: float = 1.0,
    crash_patterns: tuple[str, ...] = (),
    on_mark: Callable[[StageMark], None] | None = None,
) -> Timeline:
    """Follow the console through `stages`; return the timeline or raise StageTimeout / CrashSeen."""
    timeline = Timeline(started_at, [StageMark(s.name, s.budget * factor) for s in stages])
    stage_res = [stage.compiled() for stage in stages]
    crash_res = [re.compile(p, re.MULTILINE) for p in crash_patterns]
    since = started_at
    position = 0
    while position < len(stages):
        current = timeline.marks[position]
        remaining = since + current.budget - time.monotonic()
        try:
            index, match = console.expect([*stage_res[position:], *crash_res], max(remaining, 0.0))
        except TimeoutError:
            current.status = "stuck"
            waited = time.monotonic() - since
            raise StageTimeout(current.name, waited, current.budget, console.recent_lines(), timeline) from None
        if index >= len(stages) - position:
            pattern = crash_res[index - (len(stages) - position)].pattern
            current.status = "stuck"
            raise CrashSeen(pattern, line_of(match), f"stage '{current.name}'", console.recent_lines(), timeline)
        now = time.monotonic()
        for skipped in timeline.marks[position : position + index]:
            skipped.status = "missed"
            if on_mark:
                on_mark(skipped)
        position += index
        reached = timeline.marks[position]
        reached.status, reached.seconds, reached.line = "reached", round(now - started_at, 3), line_of(match)
        if on_mark:
            on_mark(reached)
        since = now
        position += 1
    return timeline


def line_of(match: re.Match[str]) -> str:
    text = match.string
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", max(match.start(), match.end() - 1))  # a whole-line match ends with its newline
    return text[start : end if end >= 0 else len(text)].strip()[:300]
