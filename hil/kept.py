"""VMs left running by `hil run --keep`: find them, attach to their serial console or QMP, stop them, and
reach them over SSH (`hil ssh`, `hil scp`, `hil exec -- CMD`) with the key and port the run used."""

from __future__ import annotations

import argparse
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

from hil.guest.profiles import get_profile, profile_names
from hil.guest.shell import ShellDialect
from hil.paths import SOCKET_PREFIX
from hil.qemu.kept import alive, kept_running, load_kept
from hil.qemu.qmp import QmpSession

DETACH_KEY = b"\x1d"  # Ctrl-]
STOP_WAIT_SECONDS = 10.0


def add_kept_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="run_dir", type=Path, metavar="DIR",
                        help="the kept run's folder (default: the newest kept VM still running)")  # fmt: skip


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
    attach_serial(Path(str(record["serial_socket"])), resize_line(record))
    return 0


def resize_line(record: dict[str, object]) -> str | None:
    """The guest shell's line that gives it this terminal's size, when there is a terminal and a way."""
    if not os.isatty(sys.stdin.fileno()):
        return None
    size = shutil.get_terminal_size()
    guest = str(record.get("guest", ""))
    shell = get_profile(guest).shell if guest in profile_names() else ShellDialect()
    return shell.resize_line(size.lines, size.columns)


def attach_serial(socket_path: Path, first_line: str | None = None) -> None:
    """Forward the terminal to the serial socket in raw mode until Ctrl-] or the VM exits; `first_line` is
    typed first (the terminal's size: else full-screen programs draw for the guest's default 80x24)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(socket_path))
    stdin = sys.stdin.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    try:
        if saved is not None:
            tty.setraw(stdin)
        if first_line:
            sock.sendall(first_line.encode() + b"\n")
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
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _list(terminal: Terminal) -> int:
    running = kept_running()
    if not running:
        terminal.print("no kept VM is running")
    for record in running:
        ssh = f"  ssh port {record['ssh_port']}" if record.get("ssh_key") else ""
        terminal.print(f"{record['run_dir']}  pid {record['pid']}{ssh}", soft_wrap=True)
    return 0
