"""Guest programs driven through the serial console: foreground commands and background programs with logs.

A background program runs detached (`sh -c '... &'`, so the interactive shell prints no job notices) with
its stdout and stderr in a log file; hil waits for lines in that log with a loop that runs in the guest
(one console round trip, not one per poll) and reads the log back through the console. Written for a
POSIX shell (the reference guest's busybox ash); Redox's ion needs its own spelling of these few commands.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from hil.guest.console import CommandResult
from hil.session import GuestSession

LOG_DIR = "/tmp/hil-tokio"
POLL_INTERVAL_S = 0.2
# What busybox's `timeout` exits with when it had to kill the program (SIGTERM); coreutils says 124.
TIMEOUT_STATUSES = (124, 143)


class DriverFailure(Exception):
    """The example did not do what it should; the message is the cell's reason."""


class GuestHang(DriverFailure):
    """A guest program was still running (or silent) when its time was up: the cell is a hang."""


class DriverLog:
    """The cell's driver.log: what hil typed, what the guest answered, what the host sent and received."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started = time.monotonic()
        self._stream = path.open("a", encoding="utf-8")

    def note(self, text: str) -> None:
        self._stream.write(f"[{time.monotonic() - self.started:8.3f}] {text.rstrip()}\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


@dataclass(frozen=True)
class GuestProgram:
    """A program started in the background in the guest."""

    name: str
    pid: int
    log: str


class GuestJobs:
    """Starts, watches and stops guest programs for one driver; `stop_all` ends whatever is left."""

    def __init__(self, session: GuestSession, log: DriverLog, factor: float = 1.0) -> None:
        self.session = session
        self.log = log
        self.factor = factor
        self._running: list[GuestProgram] = []

    def run(self, command: str, timeout: float = 30.0) -> CommandResult:
        """A foreground command, killed by the guest's `timeout` before hil's own console timeout expires."""
        limit = max(1, round(timeout * self.factor))
        self.log.note(f"guest$ {command}")
        result = self.session.run(f"timeout {limit} {command}", timeout + 15)
        self.log.note(f"exit {result.status}, output:\n{result.output}")
        if result.status in TIMEOUT_STATUSES:
            raise GuestHang(f"{command[:80]!r} did not finish within {limit} s; it printed: {_tail(result.output)}")
        return result

    def start(self, name: str, command: str, stdin: str | None = None) -> GuestProgram:
        log = f"{LOG_DIR}/{name}.log"
        source = f"printf %s {shlex.quote(stdin)} |" if stdin is not None else ""
        redirect = "" if stdin is not None else "< /dev/null"
        inner = f"{source} {command} > {log} 2>&1 {redirect} & echo $!"
        self.log.note(f"guest (background) $ {command}")
        result = self.session.run(f"mkdir -p {LOG_DIR}; sh -c {shlex.quote(inner.strip())}", 30)
        try:
            pid = int(result.output.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise DriverFailure(f"could not start {name} in the guest: {result.output.strip()[:200]!r}") from None
        program = GuestProgram(name, pid, log)
        self._running.append(program)
        self.log.note(f"{name} started as pid {pid}")
        return program

    def wait_for(self, program: GuestProgram, text: str, timeout: float = 30.0) -> str:
        """Wait until the program's log contains `text`; DriverFailure saying whether it died or stayed silent."""
        rounds = max(1, int(timeout * self.factor / POLL_INTERVAL_S))
        loop = (
            f"for i in $(seq {rounds}); do grep -qF {shlex.quote(text)} {program.log} && break; "
            f"kill -0 {program.pid} 2>/dev/null || break; sleep {POLL_INTERVAL_S}; done"
        )
        self.session.run(loop, timeout + 15)
        output = self.output(program)
        if text in output:
            return output
        if not self.alive(program):
            raise DriverFailure(f"{program.name} exited before printing {text!r}; it printed: {_tail(output)}")
        raise GuestHang(f"{program.name} is running but did not print {text!r} within {timeout * self.factor:.0f} s")

    def output(self, program: GuestProgram) -> str:
        """The program's log so far (NUL bytes dropped: connect --udp writes whole zero-padded buffers)."""
        output = self.session.run(f"tr -d '\\000' < {program.log}", 30).output
        self.log.note(f"{program.name} log:\n{output}")
        return output

    def alive(self, program: GuestProgram) -> bool:
        return self.session.run(f"kill -0 {program.pid}", 30).status == 0

    def require_alive(self, program: GuestProgram) -> None:
        if not self.alive(program):
            raise DriverFailure(f"{program.name} exited during the test; it printed: {_tail(self.output(program))}")

    def stop(self, program: GuestProgram) -> str:
        """Kill the program and return its whole log."""
        self.session.run(f"kill {program.pid} 2>/dev/null; true", 30)
        if program in self._running:
            self._running.remove(program)
        return self.output(program)

    def stop_all(self) -> None:
        for program in list(self._running):
            self.stop(program)


def _tail(text: str, limit: int = 300) -> str:
    text = text.strip()
    return repr(text[-limit:]) if text else "nothing"
