"""Shell dialects: how to wrap a command so its output and exit status can be read back reliably.

The markers are split in the typed line (`printf '%s%s' HB TOKEN`) so the echo of the command line can
never match them; only the shell's own output of the joined marker can.
"""

from __future__ import annotations

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


class ShellDialect:
    """A POSIX shell (busybox ash, dash, bash). Other shells override `wrap`."""

    name = "posix"

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
