"""tokio's examples on the real reference guest: the whole matrix passes, and a broken cell says why.

Needs tokio's example sources (HIL_TOKIO_SOURCE, hil's cache, or a download) and cargo with Debian's
librust-*-dev crates; skips with the reason otherwise. The first build takes minutes; later runs reuse it.
Measured here (TCG, 2 cores): the full 1,2,4 matrix in about 45 s once the image exists.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from rich.console import Console

from hil.errors import InfraError
from hil.tokio.drivers import DRIVERS, EchoTcp, EchoUdp
from hil.tokio.matrix import MATRIX_JSON, run_matrix

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the test session


@pytest.fixture(scope="module")
def tokio_image(reference_image):
    """The reference guest with tokio's examples, or a skip saying what is missing."""
    from hil.image.reference import build_reference

    try:
        return build_reference(extras=("tokio",), console=QUIET)
    except InfraError as err:
        pytest.skip(f"cannot build tokio's examples here: {err}")


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_every_example_passes_at_every_smp(tmp_path: Path, tokio_image) -> None:
    result = run_matrix((1, 2, 4), parallel=2, report_dir=tmp_path, accel="tcg", console=QUIET)
    failed = [f"{c.example}@{c.smp}: {c.status} {c.reason}" for c in result.cells if c.status not in ("pass", "skip")]
    assert result.ok, failed
    passed = {(cell.example, cell.smp) for cell in result.cells if cell.status == "pass"}
    assert passed == {(driver.name, smp) for driver in DRIVERS for smp in (1, 2, 4)}
    assert {cell.example for cell in result.cells if cell.status == "skip"} == {
        "dump", "named-pipe", "named-pipe-multi-client", "named-pipe-ready"}  # fmt: skip
    document = json.loads((tmp_path / MATRIX_JSON).read_text())
    assert document["verdict"] == "pass" and len(document["cells"]) == len(result.cells)
    for cell in document["cells"]:
        if cell["status"] == "pass":
            assert "result: pass" in (tmp_path / cell["artifacts"] / "driver.log").read_text()
    for smp in (1, 2, 4):
        argv = (tmp_path / "runs" / f"echo-smp{smp}-r1" / "try1" / "argv.txt").read_text()
        assert f"-smp {smp}" in argv
        assert "hostfwd=tcp:127.0.0.1:" in argv and "hostfwd=udp:127.0.0.1:" in argv
    assert not _processes_mentioning(str(tmp_path)), "a QEMU outlived the matrix"


def test_a_broken_forward_fails_that_cell_with_its_reason_and_only_that_cell(tmp_path: Path, tokio_image) -> None:
    # echo listens on guest port 7199 while the e1000 forwards the host port to 7101: nothing answers there.
    broken = [EchoTcp(listen_port=7199), EchoUdp()]
    result = run_matrix((1,), parallel=1, report_dir=tmp_path, accel="tcg", drivers=broken, console=QUIET,
                        timeout_factor=0.5)  # fmt: skip
    cells = {cell.example: cell for cell in result.cells}
    assert cells["echo"].status == "fail"
    assert "no echo through 127.0.0.1:" in cells["echo"].reason and "guest port 7101" in cells["echo"].reason
    assert cells["echo-udp"].status == "pass", cells["echo-udp"].reason
    log = (tmp_path / cells["echo"].artifacts / "driver.log").read_text()
    assert "Listening on: 0.0.0.0:7199" in log and "result: fail" in log
    assert json.loads((tmp_path / MATRIX_JSON).read_text())["verdict"] == "fail"
