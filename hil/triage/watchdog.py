"""The progress watchdog: console waits that end when the guest stops making progress, not at a fixed time.

Progress is a new console line that matches the guest profile's progress patterns (kernel log lines, init
milestones), a probe heartbeat (`# heartbeat CASE N`) or a probe result line (`ok N NAME`); any other
byte is not progress, and neither is a line identical to one of the last few progress lines (timestamps
aside): a guest repeating one error forever is not getting anywhere.

A wait of budget B (already multiplied by the run's timeout factor) ends with NoProgress once B seconds
pass without progress. Progress from log lines extends a wait to at most CAP_FACTOR x B in all, because
a chatty guest can still be stuck; heartbeats are the probes' explicit promise of progress and extend it
without that cap (a probe must bound its own waits, see hil/uring_probe/PROTOCOL.md).

Apart from progress, the watch notes when the guest last printed a line unlike the last few (any line):
a wait that runs out while such lines still arrive is a command that is slow, not a guest that is stuck, so
its step fails by its timeout instead of being judged a hang (Stall.printing).

Lines are read from QEMU's raw serial log (it writes every byte as the guest sends it), so watching
never consumes console text a caller is waiting for.
"""

from __future__ import annotations

import codecs
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.guest.ansi import AnsiStripper
from hil.guest.console import CommandResult, CommandTimeout, Console

CAP_FACTOR = 4.0
REPEAT_WINDOW = 8
SLICE_SECONDS = 0.5
# A new line within this long (or a quarter of the budget) before a wait ran out: still printing then.
PRINTING_SECONDS = 3.0
HEARTBEAT = re.compile(r"^# heartbeat (\S+) (\d+)\s*$")
PROBE_RESULT = re.compile(r"^(?:not )?ok \d+ \S+")
_PRINTK_TIME = re.compile(r"^\[\s*\d+\.\d+\]\s?")


@dataclass(frozen=True)
class Stall:
    """Why a wait ended: how long it lasted, how long since the last progress, what that progress was."""

    budget: float
    waited: float
    idle: float
    capped: bool
    last_progress_line: str
    last_progress_age: float | None
    last_output_age: float | None = None  # since the last new line of any kind
    output_lines: int = 0  # new lines of any kind during the wait
    last_output_line: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "why": self.why,
            "budget_s": round(self.budget, 3),
            "waited_s": round(self.waited, 3),
            "idle_s": round(self.idle, 3),
            "capped": self.capped,
            "last_progress_line": self.last_progress_line,
            "last_progress_age_s": _rounded(self.last_progress_age),
            "printing": self.printing,
            "output_lines": self.output_lines,
            "last_output_age_s": _rounded(self.last_output_age),
        }

    @property
    def printing(self) -> bool:
        """New lines (of any kind) were still arriving when the wait ran out: busy, not stuck."""
        window = min(PRINTING_SECONDS, self.budget / 4)
        return self.last_output_age is not None and self.last_output_age < window

    @property
    def why(self) -> str:
        if self.printing and not self.capped:
            return (f"still printing: {self.output_lines} new lines in {self.waited:.1f} s, the last "
                    f"{self.last_output_age:.1f} s before the end: {self.last_output_line[:60]!r}")  # fmt: skip
        if self.capped:
            return f"still printing but past {CAP_FACTOR:g}x its budget ({self.waited:.1f} s)"
        return f"no progress for {self.idle:.1f} s (budget {self.budget:.1f} s)"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


class NoProgress(TimeoutError):
    """A console wait saw no progress within its budget (or ran past its cap)."""

    def __init__(self, stall: Stall) -> None:
        self.stall = stall
        super().__init__(stall.why)


class ProgressWatch:
    """Reads new lines from the serial log and says whether they are progress."""

    def __init__(self, log_path: Path, patterns: Sequence[str] = (), repeat_window: int = REPEAT_WINDOW) -> None:
        self.log_path = Path(log_path)
        self.patterns = [re.compile(p) for p in patterns]
        self._offset = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stripper = AnsiStripper()
        self._partial = ""
        self._recent: deque[str] = deque(maxlen=repeat_window)
        self.last_progress_at: float | None = None
        self.last_heartbeat_at: float | None = None
        self.last_progress_line = ""
        self.progress_count = 0
        self._recent_output: deque[str] = deque(maxlen=repeat_window)
        self.last_output_at: float | None = None
        self.last_output_line = ""
        self.output_count = 0

    def poll(self) -> bool:
        """Read what the guest printed since the last call; True if any of it was progress."""
        progressed = False
        for line in self._new_lines():
            progressed |= self.feed_line(line)
        return progressed

    def feed_line(self, line: str, now: float | None = None) -> bool:
        line = line.strip()
        key = _PRINTK_TIME.sub("", line)
        now = time.monotonic() if now is None else now
        if key and key not in self._recent_output:
            self._recent_output.append(key)
            self.last_output_at, self.last_output_line = now, line[:300]
            self.output_count += 1
        heartbeat = bool(HEARTBEAT.match(line) or PROBE_RESULT.match(line))
        if not heartbeat and not any(p.search(line) for p in self.patterns):
            return False
        if key in self._recent:
            return False
        self._recent.append(key)
        self.last_progress_at, self.last_progress_line = now, line[:300]
        if heartbeat:
            self.last_heartbeat_at = now
        self.progress_count += 1
        return True

    def _new_lines(self) -> list[str]:
        try:
            with open(self.log_path, "rb") as stream:
                stream.seek(self._offset)
                data = stream.read()
        except OSError:
            return []
        self._offset += len(data)
        text = self._partial + self._stripper.feed(self._decoder.decode(data))
        lines = text.split("\n")
        self._partial = lines.pop()[-4096:]
        return lines


class WatchedConsole:
    """A Console whose `expect` and `run` wait for progress; everything else goes to the console inside
    (attribute writes too, such as the `activity` that crash reports name)."""

    _OWN = frozenset({"_console", "watch", "cap_factor", "last_stall"})

    def __init__(self, console: Console, watch: ProgressWatch, *, cap_factor: float = CAP_FACTOR) -> None:
        self._console = console
        self.watch = watch
        self.cap_factor = cap_factor
        self.last_stall: Stall | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(self._console, name, value)

    @property
    def inner(self) -> Console:
        return self._console

    def expect(self, patterns: list[Any], timeout: float) -> tuple[int, re.Match[str]]:
        """Like Console.expect, with `timeout` counted from the last progress (see the module notes)."""
        return self.expect_in_order([patterns], timeout)[0]

    def expect_in_order(self, steps: list[list[Any]], timeout: float) -> list[tuple[int, re.Match[str]]]:
        """Wait for one of each list of patterns in turn, all within one budget (counted as in `expect`).

        Waiting for a command's begin and end markers apart keeps pexpect's search window short however
        much the command prints between them; one pattern spanning both would have to fit in the window.
        """
        started = idle_since = time.monotonic()
        lines_before = self.watch.output_count
        remaining, found = timeout, []
        while len(found) < len(steps):
            try:
                found.append(self._console.expect(steps[len(found)], max(0.0, min(SLICE_SECONDS, remaining))))
                continue
            except TimeoutError:
                pass
            now = time.monotonic()
            if self.watch.poll():
                idle_since = now
            remaining = self._deadline(started, idle_since, timeout, now) - now
            if remaining <= 0:
                raise self._stalled(started, idle_since, timeout, now, lines_before) from None
        return found

    def run(self, command: str, timeout: float = 30.0) -> CommandResult:
        """Console.run on top of the watched expect: a command that keeps making progress keeps going."""
        wrapped = self._console.shell.wrap(command)
        started = time.monotonic()
        self._console.sendline(wrapped.line)
        try:
            _, (_, end) = self.expect_in_order([[wrapped.begin], [wrapped.end]], timeout)
        except TimeoutError as err:
            stall = err.stall if isinstance(err, NoProgress) else None
            printing = stall.why if stall is not None and stall.printing and not stall.capped else ""
            raise CommandTimeout(command, timeout, self._console.pending_text(), printing) from None
        output = self._console.text_before_match()  # everything between the two markers
        return CommandResult(command, int(end.group(1)), output, time.monotonic() - started)

    def _deadline(self, started: float, idle_since: float, timeout: float, now: float) -> float:
        deadline = idle_since + timeout
        heartbeat = self.watch.last_heartbeat_at
        if heartbeat is not None and now - heartbeat < timeout:
            return deadline  # a probe says it is working: no cap
        return min(deadline, started + timeout * self.cap_factor)

    def _stalled(self, started: float, idle_since: float, timeout: float, now: float, lines_before: int
                 ) -> NoProgress:  # fmt: skip
        last, output_at = self.watch.last_progress_at, self.watch.last_output_at
        new_lines = self.watch.output_count - lines_before
        self.last_stall = Stall(
            budget=timeout,
            waited=now - started,
            idle=now - idle_since,
            capped=now - idle_since < timeout,
            last_progress_line=self.watch.last_progress_line,
            last_progress_age=None if last is None else now - last,
            last_output_age=None if output_at is None or not new_lines else max(0.0, now - output_at),
            output_lines=new_lines,
            last_output_line=self.watch.last_output_line,
        )
        return NoProgress(self.last_stall)
