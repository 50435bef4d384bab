"""Whatever ends hil (SIGKILL, SIGTERM, Ctrl-C, an exception), no QEMU it started survives it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hil.errors import QemuLaunchError
from hil.paths import new_socket_dir
from hil.qemu.machine import Machine
from hil.qemu.spec import MachineSpec
from tests.helpers import process_gone

pytestmark = pytest.mark.qemu

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from hil.qemu.machine import Machine
    from hil.qemu.spec import MachineSpec
    from hil.lifetime import install_signal_handlers
    install_signal_handlers()  # as the hil command does
    machine = Machine(MachineSpec(accel="tcg", memory_mb=64), Path(sys.argv[1]))
    with machine:
        machine.launch()
        print(machine.process.pid, machine.socket_dir, flush=True)
        if sys.argv[2] == "raise":
            raise RuntimeError("boom")
        time.sleep(600)
    """
)


@pytest.mark.parametrize("ending", ["sigkill", "sigterm", "sigint", "raise"])
def test_qemu_dies_with_hil(tmp_path: Path, ending: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "run"), ending],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    qemu_pid = int(holder.stdout.readline().split()[0])
    assert Path(f"/proc/{qemu_pid}").exists()
    signals = {"sigkill": signal.SIGKILL, "sigterm": signal.SIGTERM, "sigint": signal.SIGINT}
    if ending in signals:
        os.kill(holder.pid, signals[ending])
    holder.wait(90)  # generous: CI machines run other VMs meanwhile
    assert process_gone(qemu_pid), f"QEMU {qemu_pid} outlived hil ({ending})"


def test_socket_folders_of_a_killed_hil_are_removed_by_the_next_one(tmp_path: Path) -> None:
    """SIGKILL leaves no Python code to clean up: the next hil to make a socket folder removes the old one,
    and never one whose owner still lives."""
    holders = [subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / f"run{n}"), "sleep"],
                                stdout=subprocess.PIPE, text=True) for n in (1, 2)]  # fmt: skip
    started = [holder.stdout.readline().split() for holder in holders if holder.stdout]
    (killed_qemu, killed_sockets), (live_qemu, live_sockets) = [(int(pid), Path(folder)) for pid, folder in started]
    try:
        os.kill(holders[0].pid, signal.SIGKILL)
        holders[0].wait(30)
        assert process_gone(killed_qemu)
        assert killed_sockets.is_dir()  # nobody was left to remove it
        shutil.rmtree(new_socket_dir())
        assert not killed_sockets.exists(), "the dead run's socket folder was not removed"
        assert live_sockets.is_dir() and Path(f"/proc/{live_qemu}").exists(), "a live run's folder was removed"
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(30)


def test_launch_failure_carries_argv_and_stderr(tmp_path: Path) -> None:
    spec = MachineSpec(accel="tcg", memory_mb=64, extra_args=("-device", "no-such-device"))
    with Machine(spec, tmp_path) as machine, pytest.raises(QemuLaunchError) as caught:
        machine.launch()
    assert "no-such-device" in caught.value.stderr
    assert caught.value.argv[0] == "qemu-system-x86_64" and "-device" in caught.value.argv
