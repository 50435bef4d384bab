"""VMs left running by `hil run --keep`: find them, attach to their serial console or QMP, stop them."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import termios
import time
import tty
from pathlib import Path

from rich.console import Console as Terminal

from hil.errors import UsageError
from hil.paths import SOCKET_PREFIX, private_dir, state_dir
from hil.qemu.qmp import QmpSession

DETACH_KEY = b"\x1d"  # Ctrl-]
STOP_WAIT_SECONDS = 10.0


def kept_index() -> Path:
    return private_dir(state_dir() / "kept")


def register_kept(run_dir: Path) -> None:
    """Remember a kept run so `hil console` finds it without a path."""
    link = kept_index() / run_dir.name
    link.write_text(str(run_dir) + "\n")
    (kept_index() / "latest").write_text(str(run_dir) + "\n")


def load_kept(run_dir: Path | None) -> dict[str, object]:
    if run_dir is None:
        latest = kept_index() / "latest"
        if not latest.is_file():
            raise UsageError("no kept VM; start one with `hil run SCENARIO --keep`")
        run_dir = Path(latest.read_text().strip())
    record_file = run_dir / "kept.json"
    if not record_file.is_file():
        raise UsageError(f"{run_dir} has no kept.json: that run was not started with --keep")
    record = json.loads(record_file.read_text())
    if not _alive(record.get("pid")):
        raise UsageError(f"the VM of {run_dir} is no longer running (pid {record.get('pid')})")
    return record


def console_command(args: argparse.Namespace, terminal: Terminal) -> int:
    if args.list:
        return _list(terminal)
    record = load_kept(args.run_dir)
    if args.stop:
        return _stop(record, terminal)
    if args.qmp:
        # qemu.qmp ships an interactive QMP shell; hil does not write its own.
        return subprocess.call([sys.executable, "-m", "qemu.qmp.qmp_shell", str(record["qmp_socket"])])
    terminal.print(f"serial console of pid {record['pid']}; detach with Ctrl-]")
    attach_serial(Path(str(record["serial_socket"])))
    return 0


def attach_serial(socket_path: Path) -> None:
    """Forward the terminal to the serial socket in raw mode until Ctrl-] or the VM exits."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(socket_path))
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    try:
        if saved is not None:
            tty.setraw(stdin)
        _pump(sock, stdin)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        sock.close()


def _pump(sock: socket.socket, stdin: int) -> None:
    while True:
        ready, _, _ = select.select([sock, stdin], [], [])
        if sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            os.write(sys.stdout.fileno(), data)
        if stdin in ready:
            data = os.read(stdin, 1024)
            if not data or DETACH_KEY in data:
                return
            sock.sendall(data)


def _stop(record: dict[str, object], terminal: Terminal) -> int:
    qmp_socket = Path(str(record["qmp_socket"]))
    session = QmpSession()
    try:
        session.connect(qmp_socket, timeout=5)
        session.quit()
    finally:
        session.close()
    _wait_gone(record.get("pid"), STOP_WAIT_SECONDS)
    if qmp_socket.parent.name.startswith(SOCKET_PREFIX):
        shutil.rmtree(qmp_socket.parent, ignore_errors=True)
    terminal.print(f"stopped the VM of {record['run_dir']}")
    return 0


def _wait_gone(pid: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _list(terminal: Terminal) -> int:
    for entry in sorted(kept_index().iterdir()):
        if entry.name == "latest":
            continue
        run_dir = Path(entry.read_text().strip())
        with contextlib.suppress(UsageError):
            record = load_kept(run_dir)
            terminal.print(f"{run_dir}  pid {record['pid']}")
            continue
        entry.unlink(missing_ok=True)  # the VM is gone: forget it
    return 0


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
