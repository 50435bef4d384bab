"""How long hil's processes live: children that die with hil, and hil's own answer to stop signals.

- A child started with `preexec_fn=dies_with_hil(sig)` gets `sig` from the kernel when hil dies
  (PR_SET_PDEATHSIG), even by SIGKILL when no Python code runs: QEMU gets SIGKILL, a run set's `hil run`
  children SIGTERM so they stop their own QEMU in order and write their report. The signal fires when the
  *thread* that forked the child exits, so start children from a thread that lives as long as they should.
- `install_signal_handlers` turns SIGTERM and SIGHUP into Terminated, so `finally` blocks run and the run
  records what stopped it; `signals_deferred` holds them back while a report is written or QEMU stopped.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import threading
from collections.abc import Callable, Iterator

from hil.results import Terminated

PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved now: a child between fork and exec loads nothing


def dies_with_hil(signum: int) -> Callable[[], None]:
    """A preexec_fn for subprocess: the child gets `signum` when this process dies."""
    parent = os.getpid()

    def arm() -> None:  # runs in the child between fork and exec: no allocation-heavy work here
        _prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return arm


def install_signal_handlers() -> None:
    """Turn SIGTERM and SIGHUP into Terminated (a SystemExit) so `finally` blocks and context managers run,
    and the runner can record what stopped the run.

    Only the first signal raises: the unwinding it starts (writing the report, stopping QEMU in order)
    must not be cut short by the next one a CI runner or a supervisor sends. Only the CLI calls this (a
    library must not take over a host program's signals).
    """
    stopping: list[int] = []

    def _terminate(signum: int, _frame: object) -> None:
        if stopping:
            return
        stopping.append(signum)
        raise Terminated(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    # A parent that ignores SIGINT (CI runners, xdist workers) passes that on; Ctrl-C must still stop runs.
    signal.signal(signal.SIGINT, signal.default_int_handler)


STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGHUP, signal.SIGINT})


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold stop signals back while a step must not be torn in half (writing a report, stopping QEMU);
    one that arrived meanwhile is delivered when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
