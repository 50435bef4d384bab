"""Every row of the exit-code table holds: the README, `hil run --help` and real `hil run` processes agree.

Rows pinned here with a snapshot-backed guest (one cold boot, then restores of about a second): 0, 1, 2,
3 and 130 (Ctrl-C). SIGTERM and SIGHUP (143, 129) during a step and at boot, and run sets stopped by a
signal, are pinned in test_verdict_integrity.py; run sets' 1 and 3 in test_runset.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.cli_run import EXIT_CODES

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = """
name = "exit-codes"
guest = "reference"
[machine]
snapshot = true
[[steps]]
name = "the answer"
run = "{command}"
timeout = 600
"""


def hil(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip


def readme_rows() -> list[tuple[str, str]]:
    lines = (ROOT / "README.md").read_text().split("### Exit codes", 1)[1].splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("|"))
    end = next(index for index, line in enumerate(lines[start:], start) if not line.startswith("|"))
    return [tuple(cell.strip() for cell in row.strip("|").split("|")) for row in lines[start + 2 : end]]


def test_the_readme_has_the_table_hil_prints() -> None:
    assert readme_rows() == [tuple(row) for row in EXIT_CODES]


def test_run_help_shows_every_row_at_80_columns() -> None:
    done = hil("run", "--help")
    assert done.returncode == 0
    for code, meaning in EXIT_CODES:
        row = rf"^\s+{re.escape(code)}\s+{re.escape(meaning)}$"
        assert re.search(row, done.stdout, re.MULTILINE), (code, done.stdout)
    assert max(len(line) for line in done.stdout.splitlines()) <= 80


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, reference_image) -> callable:
    folder = tmp_path_factory.mktemp("exit-codes")

    def write(command: str) -> Path:
        path = folder / f"{abs(hash(command))}.toml"
        path.write_text(SCENARIO.replace("{command}", command))
        return path

    return write


@pytest.mark.qemu
@pytest.mark.parametrize(("command", "code", "verdict"), [("true", 0, "pass"), ("false", 1, "fail")])
def test_pass_is_0_and_a_failed_step_is_1(scenario, tmp_path: Path, command: str, code: int, verdict: str) -> None:
    done = hil("run", str(scenario(command)), "--report-dir", str(tmp_path))
    assert done.returncode == code, done.stdout + done.stderr
    assert f"verdict: {verdict}" in done.stdout


def test_a_usage_error_is_2_and_nothing_starts(tmp_path: Path) -> None:
    done = hil("run", "boot", "--timeout-factor", "-1", "--report-dir", str(tmp_path / "run"))
    assert done.returncode == 2 and not (tmp_path / "run").exists()


@pytest.mark.qemu
def test_a_host_problem_is_3(scenario, tmp_path: Path) -> None:
    done = hil("run", str(scenario("true")), "--qemu", "/nonexistent/qemu-system-x86_64", "--no-snapshot",
               "--report-dir", str(tmp_path))  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "verdict: infra" in done.stdout and "not found" in done.stdout


@pytest.mark.qemu
def test_ctrl_c_during_a_step_is_130(scenario, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    path = scenario("echo CTRL-C-$((6*7)); sleep 600")
    process = subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(path), "--report-dir", str(run_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while b"CTRL-C-42" not in _read(run_dir / "serial.log"):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()[0]
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    printed = process.communicate(timeout=90)[0]
    assert process.returncode == 130, printed
    assert "interrupted by Ctrl-C" in printed


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""
