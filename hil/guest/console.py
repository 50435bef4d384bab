"""The serial console: pexpect on QEMU's chardev socket, matching on text without escape sequences.

QEMU itself writes every raw byte to the run's serial log (chardev logfile=); this side keeps a plain-text
transcript and what hil typed, and offers `run(cmd) -> CommandResult` on top of a shell dialect.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pexpect
import pexpect.fdpexpect

from hil.errors import InfraError
from hil.guest.ansi import AnsiStripper
from hil.guest.matching import GatedSearcher, LazyBefore, TailExpecter, TextChunks
from hil.guest.shell import ShellDialect
from hil.guest.stages import CrashSeen, line_of

TAIL_LINES = 200
TAIL_CHARS = 1 << 18  # the tail keeps the reads that make up the last this many characters (>> TAIL_LINES lines)
READ_SIZE = 1 << 20  # one read takes whatever has arrived, so a fast stream costs few trips through the loop
LOOKBACK = 8192  # longer than any line-scale pattern: stage lines, markers, crash lines
CRASH_TAIL_SECONDS = 0.5
CLOSE_DRAIN_SECONDS = 0.05


class ConsoleClosed(InfraError):
    """The serial connection ended (QEMU exited)."""


class CommandTimeout(Exception):
    """A command's end marker did not arrive in time; `output` is what the console showed meanwhile;
    `still_printing`: the guest kept printing new lines to the end (a slow command, not a stuck guest)."""

    def __init__(self, command: str, timeout: float, output: str, still_printing: str = "") -> None:
        self.command = command
        self.timeout = timeout
        self.output = output
        self.still_printing = still_printing  # what it printed, said in words; empty when it fell silent
        super().__init__(f"command {command!r} did not finish within {timeout:.1f} s")


@dataclass(frozen=True)
class CommandResult:
    command: str
    status: int
    output: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.status == 0


class _RawTee:
    """An incremental decoder that first writes the raw bytes it is given to a file: the serial log holds
    exactly what came over the socket, in order, before any decoding or stripping."""

    def __init__(self, decoder: codecs.IncrementalDecoder, sink: BinaryIO) -> None:
        self._decoder = decoder
        self._sink = sink

    def decode(self, data: bytes, final: bool = False) -> str:
        if data:
            self._sink.write(data)
            self._sink.flush()  # the progress watch and triage read the file while the run goes on
        return self._decoder.decode(data, final)


class _StrippingSpawn(LazyBefore, pexpect.fdpexpect.fdspawn):
    """fdspawn whose buffer holds text with escape sequences and carriage returns removed. Each read is
    searched once, with `lookback` characters before it; regexes run only where their literals occur."""

    def __init__(self, fd: int, on_text: callable, raw_log: BinaryIO | None = None, **kwargs: object) -> None:
        super().__init__(fd, encoding="utf-8", codec_errors="replace", **kwargs)
        self._stripper = AnsiStripper()
        self._on_text = on_text
        self.lookback = LOOKBACK
        self.buffer_type = TextChunks
        self._buffer = TextChunks()
        self._before = TextChunks()
        if raw_log is not None:
            self._decoder = _RawTee(self._decoder, raw_log)

    def read_nonblocking(self, size: int = 1, timeout: float | None = -1) -> str:
        text = super().read_nonblocking(size, timeout)
        plain = self._stripper.feed(text)
        self._on_text(plain)
        return plain

    def expect_list(
        self, pattern_list: list[Any], timeout: float | None = -1, searchwindowsize: int | None = -1, **kw: Any
    ) -> int:
        if timeout == -1:
            timeout = self.timeout
        if kw:
            return super().expect_list(pattern_list, timeout, searchwindowsize, **kw)
        expecter = TailExpecter(self, GatedSearcher(pattern_list), searchwindowsize, self.lookback)
        return expecter.expect_loop(timeout)


class Console:
    """A connection to the guest's serial port."""

    def __init__(
        self,
        socket_path: Path,
        transcript: Path | None = None,
        shell: ShellDialect | None = None,
        crash_patterns: tuple[str, ...] = (),
        raw_log: Path | None = None,
        fault_patterns: tuple[str, ...] = (),
    ):
        self.socket_path = socket_path
        self.raw_log = raw_log  # where every byte read from the socket goes, as it came
        self.shell = shell or ShellDialect()
        # Watched during every wait, so a crash ends any step at once instead of running into its timeout.
        self.crash_patterns = tuple(crash_patterns)
        # One alternation instead of one search per pattern: every read is searched once for all of them.
        self._crash_any = (
            re.compile("|".join(f"(?:{p})" for p in crash_patterns), re.MULTILINE) if crash_patterns else None
        )
        # A program's fault report ends with one of these lines; the guest goes on. `on_fault(line)` records it
        # and says whether it ends the run after all (a kernel-mode fault, a program the guest needs).
        self._fault_any = (
            re.compile("(?:" + "|".join(f"(?:{p})" for p in fault_patterns) + r")[^\n]*\n", re.MULTILINE)
            if fault_patterns
            else None
        )
        self.on_fault: Callable[[str], bool] = lambda line: True
        self.activity = "the console"
        self._transcript = open(transcript, "a", encoding="utf-8") if transcript else None  # noqa: SIM115
        self._tail: deque[str] = deque()  # recent text as it arrived; split into lines when asked for
        self._tail_chars = 0
        self._tail_cut = False  # reads were dropped: the first line in _tail may be the end of a longer one
        self._sock: socket.socket | None = None
        self._spawn: _StrippingSpawn | None = None
        self._raw: BinaryIO | None = None
        self.last_output_at = time.monotonic()

    def connect(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.socket_path))
                break
            except OSError as err:
                sock.close()
                if time.monotonic() > deadline:
                    raise InfraError(f"cannot connect to the serial console at {self.socket_path}: {err}") from err
                time.sleep(0.05)
        self._sock = sock
        self._raw = open(self.raw_log, "wb") if self.raw_log else None  # noqa: SIM115 - closed in close()
        # fdspawn closes the descriptor it is given, so it gets its own duplicate.
        self._spawn = _StrippingSpawn(os.dup(sock.fileno()), self._record, self._raw, timeout=30, maxread=READ_SIZE)
        # pexpect searches only this much of the buffer per read (it must hold a whole read plus the longest
        # match): without a window it searches everything since the last match again after every read.
        self._spawn.searchwindowsize = READ_SIZE + LOOKBACK
        self._spawn.delayafterread = None

    def close(self) -> None:
        if self._spawn is not None:
            if self._raw is not None:
                self.drain(CLOSE_DRAIN_SECONDS)  # what the guest sent last belongs in the serial log too
            self._spawn.close()
            self._spawn = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._transcript:
            self._transcript.close()
            self._transcript = None

    # --- matching ---------------------------------------------------------------------------------------

    def expect(self, patterns: list[str | re.Pattern[str]], timeout: float) -> tuple[int, re.Match[str]]:
        """Wait for the first of `patterns`; raises TimeoutError, ConsoleClosed or CrashSeen. A program's fault
        seen meanwhile goes to `on_fault` and the wait goes on, unless that says the fault ends the run."""
        spawn = self._require_spawn()
        compiled = [re.compile(p) if isinstance(p, str) else p for p in patterns]
        crashes = [self._crash_any] if self._crash_any is not None else []
        faults = [self._fault_any] if self._fault_any is not None else []
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            watched = [*compiled, *crashes, *faults, pexpect.EOF, pexpect.TIMEOUT]
            try:
                index = spawn.expect_list(watched, timeout=max(deadline - time.monotonic(), 0))
            except OSError as err:
                raise ConsoleClosed(f"serial console read failed: {err}") from err
            if faults and index == len(compiled) + len(crashes):
                self._fault(line_of(spawn.match))
                continue
            if index < len(compiled):
                self._watch_within(spawn.match.group(0))
            return self._outcome(index, compiled, crashes, timeout)

    def _fault(self, line: str) -> None:
        if self.on_fault(line):
            raise CrashSeen(self._fault_any.pattern if self._fault_any else "", line, self.activity,
                            self.recent_lines())  # fmt: skip

    def _watch_within(self, matched: str) -> None:
        """A pattern that takes whole lines (a probe's line reader) wins over the crash and fault patterns on
        those lines: look for them in what it matched."""
        if self._crash_any is not None and (crash := self._crash_any.search(matched)):
            self.drain(CRASH_TAIL_SECONDS)
            line = line_of(crash)
            pattern = next((p for p in self.crash_patterns if re.search(p, line)), self._crash_any.pattern)
            raise CrashSeen(pattern, line, self.activity, self.recent_lines())
        if self._fault_any is not None:
            for fault in self._fault_any.finditer(matched if matched.endswith("\n") else matched + "\n"):
                self._fault(line_of(fault))

    def _outcome(
        self, index: int, compiled: list[re.Pattern[str]], crashes: list[re.Pattern[str]], timeout: float
    ) -> tuple[int, re.Match[str]]:
        spawn = self._require_spawn()
        faults = 1 if self._fault_any is not None else 0
        if index < len(compiled):
            return index, spawn.match
        if index < len(compiled) + len(crashes):
            line = line_of(spawn.match)
            self.drain(CRASH_TAIL_SECONDS)  # the rest of the dump (backtrace, registers) belongs in the report
            # The pattern may match before its line is complete; take the whole line as it arrived since.
            line = next((full.strip() for full in reversed(self.recent_lines(400)) if line in full), line)
            pattern = next((p for p in self.crash_patterns if re.search(p, line)), crashes[0].pattern)
            raise CrashSeen(pattern, line, self.activity, self.recent_lines())
        if index == len(compiled) + len(crashes) + faults:
            raise ConsoleClosed("the serial console closed (QEMU exited)")
        raise TimeoutError(f"none of {[p.pattern for p in compiled]} within {timeout:.1f} s")

    def drain(self, seconds: float) -> None:
        """Read (and record) whatever arrives for `seconds`, matching nothing."""
        spawn = self._require_spawn()
        with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF, OSError):
            spawn.expect_list([re.compile(r"(?!x)x")], timeout=seconds)

    def send(self, text: str) -> None:
        spawn = self._require_spawn()
        if self._transcript:
            self._transcript.write(f"\n[hil typed {time.time():.3f}] {text!r}\n")
        try:
            spawn.send(text)
        except OSError as err:
            raise ConsoleClosed(f"cannot write to the serial console: {err}") from err

    def sendline(self, text: str = "") -> None:
        self.send(text + "\n")

    def pending_text(self) -> str:
        """After a wait that timed out: all that arrived since the last match (not only the search window)."""
        return (self._spawn.before or "") if self._spawn else ""

    def text_before_match(self) -> str:
        """What came between the last two matches (a command's output between its markers)."""
        return self._require_spawn().before

    # --- commands ---------------------------------------------------------------------------------------

    def run(self, command: str, timeout: float = 30.0) -> CommandResult:
        """Type `command` at the shell and return its exit status and output (without the echo)."""
        wrapped = self.shell.wrap(command)
        started = time.monotonic()
        self.sendline(wrapped.line)
        try:
            self.expect([wrapped.begin], timeout)
            _, end = self.expect([wrapped.end], max(0.0, started + timeout - time.monotonic()))
        except TimeoutError:
            raise CommandTimeout(command, timeout, self.pending_text()) from None
        return CommandResult(command, int(end.group(1)), self.text_before_match(), time.monotonic() - started)

    def resync(self, timeout: float = 10.0, attempts: int = 3) -> None:
        """Bring the shell to a known state: interrupt anything half typed, then round-trip a marker."""
        for attempt in range(attempts):
            self.send("\x03" if attempt else "\x15")  # Ctrl-U clears a half line; Ctrl-C breaks a command
            wrapped = self.shell.sync_line()
            self.sendline(wrapped.line)
            try:
                self.expect([wrapped.end], timeout / attempts)
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"the shell did not answer a sync marker within {timeout:.1f} s")

    # --- history ----------------------------------------------------------------------------------------

    def recent_lines(self, count: int = 40) -> list[str]:
        """The guest's last lines as a person would read them: hil's command framing taken out."""
        lines = "".join(self._tail).split("\n")
        partial = lines.pop()[-4096:]
        if self._tail_cut:
            lines = lines[1:]
        lines = lines[-TAIL_LINES:]
        if partial:
            lines.append(partial)
        return self.shell.unframe(lines)[-count:]

    def _record(self, text: str) -> None:
        if not text:
            return
        self.last_output_at = time.monotonic()
        if self._transcript:
            self._transcript.write(text)
        self._tail.append(text)
        self._tail_chars += len(text)
        while self._tail_chars - len(self._tail[0]) >= TAIL_CHARS:  # the rest still covers TAIL_CHARS
            self._tail_chars -= len(self._tail.popleft())
            self._tail_cut = True

    def _require_spawn(self) -> _StrippingSpawn:
        if self._spawn is None:
            raise ConsoleClosed("the serial console is not connected")
        return self._spawn
