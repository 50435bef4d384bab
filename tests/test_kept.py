"""A VM kept by `hil run --keep`, reached the way users reach one: `hil exec -- CMD` (its exit status),
`hil scp` both ways, `hil ssh -- CMD`, the pasteable ssh line `--keep` prints, `hil console` at the real
terminal's size, and no command ever picking a dead kept VM.

One real reference guest (restored from a snapshot) is kept for the module and stopped at its end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from hil.qemu.kept import register_kept
from tests.helpers import process_gone

SCENARIO = """
name = "kept"
guest = "reference"
[machine]
snapshot = true
[[steps]]
name = "answers"
run = "true"
"""


def hil(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory, reference_image) -> Iterator[tuple[Path, str]]:
    """(the kept run's folder, what `hil run --keep` printed)."""
    folder = tmp_path_factory.mktemp("kept")
    scenario = folder / "kept.toml"
    scenario.write_text(SCENARIO)
    done = hil("run", str(scenario), "--keep", "--report-dir", str(folder / "run"))
    assert done.returncode == 0, done.stdout + done.stderr
    run_dir = folder / "run"
    pid = json.loads((run_dir / "kept.json").read_text())["pid"]
    try:
        yield run_dir, done.stdout
    finally:
        hil("console", "--stop", str(run_dir))
        if not process_gone(pid, 5):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.qemu
def test_exec_exits_with_the_commands_status_and_passes_its_output(kept: tuple[Path, str]) -> None:
    done = hil("exec", "--", "sh", "-c", "echo to-out; echo to-err >&2; exit 7")
    assert done.returncode == 7, done.stdout + done.stderr
    assert done.stdout == "to-out\n" and done.stderr == "to-err\n"
    line = hil("exec", "--run", str(kept[0]), "--", "uname -s | tr a-z A-Z")
    assert line.returncode == 0 and line.stdout == "LINUX\n"
    empty = hil("exec")
    assert empty.returncode == 2 and "hil exec -- " in empty.stdout


@pytest.mark.qemu
def test_scp_copies_both_ways(kept: tuple[Path, str], tmp_path: Path) -> None:
    local = tmp_path / "note.txt"
    local.write_text("from the host\n")
    assert hil("scp", str(local), ":/tmp/").returncode == 0
    shown = hil("exec", "--", "cat /tmp/note.txt")
    assert shown.stdout == "from the host\n", shown.stdout + shown.stderr
    back = tmp_path / "back"
    back.mkdir()
    got = hil("scp", ":/tmp/note.txt", str(back))
    assert got.returncode == 0, got.stdout + got.stderr
    assert (back / "note.txt").read_text() == "from the host\n"
    both = hil("scp", str(local), str(back))
    assert both.returncode == 2 and "':'" in both.stdout and len(both.stdout.splitlines()) == 1


@pytest.mark.qemu
def test_keep_prints_the_key_and_a_pasteable_ssh_command(kept: tuple[Path, str]) -> None:
    run_dir, printed = kept
    record = json.loads((run_dir / "kept.json").read_text())
    assert f"SSH key: {record['ssh_key']}" in printed and Path(record["ssh_key"]).is_file()
    pasted = re.search(r"^  ssh:\s+(ssh .*)$", printed, re.MULTILINE)
    assert pasted, printed
    argv = [*shlex.split(pasted.group(1)), "-o", "BatchMode=yes", "cat /proc/sys/kernel/ostype"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "Linux\n", done.stderr
    assert hil("ssh", "--", "echo", "via-hil-ssh").stdout.strip() == "via-hil-ssh"


@pytest.mark.qemu
def test_no_command_picks_a_dead_kept_vm(kept: tuple[Path, str], tmp_path: Path) -> None:
    dead = tmp_path / "dead-run"
    dead.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    record = {"pid": gone.pid, "run_dir": str(dead), "qmp_socket": "/nonexistent", "serial_socket": "/nonexistent"}
    (dead / "kept.json").write_text(json.dumps(record))
    register_kept(dead)  # registered last: the newest entry, but its VM is gone
    listed = hil("console", "--list")
    assert str(kept[0]) in listed.stdout and str(dead) not in listed.stdout
    assert hil("exec", "--", "true").returncode == 0, "hil exec took the dead VM"
    told = hil("exec", "--run", str(dead), "--", "true")
    assert told.returncode == 2 and "no longer running" in told.stdout


@pytest.mark.qemu
def test_console_gives_the_guest_the_real_terminal_size(kept: tuple[Path, str]) -> None:
    env = {**os.environ, "COLUMNS": "", "LINES": ""}
    console = pexpect.spawn(sys.executable, ["-m", "hil.cli", "console", str(kept[0])], env=env,
                            dimensions=(33, 101), encoding="utf-8", timeout=30)  # fmt: skip
    try:
        console.expect("detach with Ctrl-]")
        console.sendline("stty size")
        console.expect(r"\r\n33 101\r\n")
    finally:
        console.sendcontrol("]")
        console.expect(pexpect.EOF)
