"""Shell dialects: how to wrap a command so its output and exit status can be read back reliably.

The markers are split in the typed line (`printf '%s%s' HB TOKEN`) so the echo of the command line can
never match them; only the shell's own output of the joined marker can.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
from dataclasses import dataclass


@dataclass(frozen=True)
class WrappedCommand:
    """The typed line, and how its output shows: `begin`, the output, then `end` (which holds the status).

    `pattern` matches all three at once (for parsing a complete transcript); the console waits for
    `begin` and `end` separately, so its search window stays short however long the output is.
    """

    line: str
    pattern: re.Pattern[str]
    begin: re.Pattern[str]
    end: re.Pattern[str]


# The shell's own printing of the joined markers: a line of its own, read back by hil and never by people.
MARKER_LINE = re.compile(r"H[BE][0-9a-f]{12}(?::\d+)?")


class ShellDialect:
    """A POSIX shell (busybox ash, dash, bash). Other shells override `wrap` and the two `typed_` patterns."""

    name = "posix"
    # The echo of a typed line, around the command: `printf ... HB TOKEN; eval 'CMD'; printf ... HE TOKEN $?`.
    typed_begin = re.compile(r"printf '%s%s\\n' HB [0-9a-f]{12}; eval ")
    typed_end = re.compile(r"; printf '\\n%s%s:%d\\n' HE [0-9a-f]{12} \$\?$")

    @staticmethod
    def new_token() -> str:
        """A fresh marker token per command, so output from an earlier command can never end a later one."""
        return secrets.token_hex(6)

    def wrap(self, command: str) -> WrappedCommand:
        token = self.new_token()
        begin, end = f"HB{token}", f"HE{token}"
        # One typed line: the command goes through eval so comments, `&` or newlines in it cannot
        # swallow the end marker, and all echo (continuation prompts included) comes before HB.
        line = f"printf '%s%s\\n' HB {token}; eval {shlex.quote(command)}; printf '\\n%s%s:%d\\n' HE {token} $?"
        return markers(line, begin, end)

    def sync_line(self) -> WrappedCommand:
        """A no-op command whose marker proves the shell is reading input again."""
        return self.wrap("true")

    def resize_line(self, rows: int, columns: int) -> str | None:
        """What tells the guest's terminal its size (a serial line has no way to say it by itself)."""
        return f"stty rows {rows} cols {columns}"

    def unwrap_command(self, quoted: str) -> str:
        """The command as the scenario wrote it, from its quoted form in the typed line."""
        try:
            words = shlex.split(quoted)
        except ValueError:  # one line of a command typed over several: its quotes do not pair up
            return quoted.strip("'")
        return words[0] if len(words) == 1 else quoted

    def unframe(self, lines: list[str]) -> list[str]:
        """A transcript as a person would have typed it: `PROMPT CMD` and the output, without hil's markers."""
        shown: list[str] = []
        for line in lines:
            if MARKER_LINE.fullmatch(line.strip()):
                if line.startswith("HE") and shown and not shown[-1].strip():
                    shown.pop()  # the newline hil prints before the end marker
                continue
            untyped = self._untyped(line)
            if untyped is not None:
                shown.append(untyped)
        return shown

    def _untyped(self, line: str) -> str | None:
        """A line with hil's framing taken out; None where nothing but framing was on it.

        A command typed before the shell prompts shows twice: the terminal's echo of the typeahead, then
        the shell's redraw after its prompt, on the same line or across two. Only the redraw is kept.
        """
        begins = list(self.typed_begin.finditer(line))
        end = self.typed_end.search(line)
        if not begins and end is None:
            return line
        start = begins[-1].end() if begins else 0
        head = line[: begins[-1].start()] if begins else ""
        if len(begins) > 1:  # typeahead echo, then prompt and redraw: the echo is a prefix of the redraw
            echo, typed = line[begins[-2].start() : begins[-1].start()], line[begins[-1].start() :]
            shared = len(os.path.commonprefix([echo, typed]))  # noqa: RUF071 (characters, not paths)
            head = line[: begins[-2].start()] + echo[shared:]
        earlier_end = list(self.typed_end_within.finditer(head))
        if earlier_end:  # the rest of an echo that wrapped onto this line, then the prompt
            head = head[earlier_end[-1].end() :]
        stop = end.start() if end and end.start() >= start else len(line)
        shown = head + self.unwrap_command(line[start:stop])
        return shown if shown.strip() else None

    @property
    def typed_end_within(self) -> re.Pattern[str]:
        """`typed_end` anywhere in a line, not only at its end (a prompt can follow it)."""
        return re.compile(self.typed_end.pattern.removesuffix("$"))


def markers(line: str, begin: str, end: str) -> WrappedCommand:
    """Output printed as: BEGIN newline, the output, newline, END:status newline."""
    return WrappedCommand(
        line=line,
        pattern=re.compile(rf"{begin}\n(.*?)\n?{end}:(\d+)\n", re.DOTALL),
        begin=re.compile(rf"{begin}\n"),
        end=re.compile(rf"\n?{end}:(\d+)\n"),
    )


def parse_wrapped(match: re.Match[str]) -> tuple[int, str]:
    """(exit status, output) from a match of WrappedCommand.pattern."""
    return int(match.group(2)), match.group(1)
