"""Starting and stopping the QEMU process so that no QEMU outlives hil.

Three layers make sure of it:
- the child asks the kernel for SIGKILL when its parent dies (hil.lifetime.dies_with_hil), which covers a
  SIGKILL of hil itself, where no Python code runs;
- QEMU runs in its own process group, so Ctrl-C in the terminal reaches hil (which stops QEMU in order)
  and a stop can kill QEMU and anything it spawned together;
- every live process is registered, and an atexit hook plus a SIGTERM/SIGHUP handler stop them all.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so launch from a thread that
lives as long as the machine (the main thread, or a worker that owns the machine).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from hil.errors import QemuLaunchError
from hil.lifetime import dies_with_hil


class QemuProcess:
    """One QEMU process: launched in its own group, tied to hil's life unless kept on purpose."""

    def __init__(self, argv: list[str], stderr_path: Path, *, tied_to_hil: bool = True) -> None:
        self.argv = argv
        self.stderr_path = stderr_path
        self.tied_to_hil = tied_to_hil
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError("QEMU was not started")
        return self._popen.pid

    def start(self) -> None:
        preexec = dies_with_hil(signal.SIGKILL) if self.tied_to_hil else None
        try:
            with open(self.stderr_path, "wb") as stderr:
                self._popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=stderr,
                    stderr=stderr,
                    preexec_fn=preexec,
                    process_group=0,
                    close_fds=True,
                )
        except FileNotFoundError:
            raise QemuLaunchError(
                f"QEMU binary {self.argv[0]!r} not found; install it (apt-get install qemu-system-x86) "
                "or pass its path",
                self.argv,
                "",
            ) from None
        except PermissionError as err:
            raise QemuLaunchError(f"cannot execute {self.argv[0]!r}: {err}", self.argv, "") from None
        _live.add(self)

    def exit_code(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_until(self, ready: callable, timeout: float) -> None:
        """Wait for `ready()` (e.g. the QMP socket exists) or fail with QEMU's own words if it exits."""
        deadline = time.monotonic() + timeout
        while not ready():
            code = self.exit_code()
            if code is not None:
                raise QemuLaunchError(f"QEMU exited with status {code} while starting", self.argv, self.stderr_text())
            if time.monotonic() > deadline:
                self.kill()
                raise QemuLaunchError(f"QEMU did not come up within {timeout:.0f} s", self.argv, self.stderr_text())
            time.sleep(0.01)

    def wait(self, timeout: float) -> int | None:
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it."""
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(10)
        _live.discard(self)

    def forget(self) -> None:
        """Stop tracking a process that was deliberately left running (--keep)."""
        _live.discard(self)


class _LiveProcesses:
    """Every QEMU hil started and still owns, so exit paths can stop them all."""

    def __init__(self) -> None:
        self._procs: set[QemuProcess] = set()
        self._lock = threading.Lock()

    def add(self, proc: QemuProcess) -> None:
        with self._lock:
            self._procs.add(proc)

    def discard(self, proc: QemuProcess) -> None:
        with self._lock:
            self._procs.discard(proc)

    def kill_all(self) -> None:
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.tied_to_hil:
                proc.kill()


_live = _LiveProcesses()
atexit.register(_live.kill_all)
