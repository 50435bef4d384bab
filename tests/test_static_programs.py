"""hil's guest programs build with the host gcc; the probe's logic runs on the host kernel too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from hil.errors import InfraError
from hil.guest.tools import NET_TOOL
from hil.image.static_c import StaticProgram
from hil.probes.ktap import parse_text
from hil.uring_probe.build import LINUX_PROBE


def test_the_probe_runs_on_the_host_kernel_against_a_file(tmp_path: Path) -> None:
    probe = LINUX_PROBE.build(tmp_path / "bin")
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(16 << 20))
    done = subprocess.run([str(probe), "--device", str(disk), "--quick"], capture_output=True, text=True, timeout=120)
    report = parse_text(done.stdout)
    if any("Invalid argument" in case.reason for case in report.cases):
        pytest.skip("this filesystem refuses O_DIRECT; the guest tests cover the device cases")
    assert report.ok, report.as_dict()
    assert done.returncode == 0
    assert {case.name for case in report.cases} >= {"setup", "nop_batch", "cancel", "linked", "timeout"}


def test_digest_follows_the_sources(tmp_path: Path) -> None:
    (tmp_path / "x.c").write_text("int main(void) { return 0; }\n")
    program = StaticProgram("x", tmp_path, "x.c", "/usr/bin/x")
    before = program.digest()
    (tmp_path / "x.c").write_text("int main(void) { return 1; }\n")
    assert program.digest() != before
    assert NET_TOOL.digest() != LINUX_PROBE.digest()


def test_a_compiler_error_is_reported_with_its_words(tmp_path: Path) -> None:
    (tmp_path / "bad.c").write_text("int main(void) { return undefined_name; }\n")
    with pytest.raises(InfraError, match="undefined_name") as caught:
        StaticProgram("bad", tmp_path, "bad.c", "/usr/bin/bad").build(tmp_path / "out")
    assert "fix: apt-get install gcc" in str(caught.value)
    assert not (tmp_path / "out" / "bad").exists()
