"""The kernel-gating flow inside `hil bisect`, with the real Redox kernel (needs HIL_REDOX_PKGS).

A user with a Redox toolchain bisects the kernel itself: `--build 'cargo build ... && cp kernel out'`
then `hil run kernel-smoke --packages DIR --kernel out` at each commit. Here, without that toolchain, the
kernel stays the real packaged one and the throwaway repository carries the initfs instead: good commits
build hil's kernel-smoke probe, one commit replaces its entry with a spin (the bug), a later commit is
unrelated. The bisection must name the commit that brought the spin.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import commit_files, git_in, run_bisect

PACKAGES = os.environ.get("HIL_REDOX_PKGS")
pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(not PACKAGES, reason="set HIL_REDOX_PKGS to a Redox package folder (kernel, bootloader)"),
]
SOURCE_ROOT = Path(__file__).resolve().parent.parent

BUILD = textwrap.dedent(
    """
    # Writes the initfs this commit boots: hil's probe, or a bare entry point if entry.hex says so.
    import shutil
    import sys
    from pathlib import Path

    from hil.image.redox.initfs import build_initfs
    from hil.initfs_probe.build import build_initfs_probe

    out = Path(sys.argv[1])
    entry = Path("entry.hex")
    if entry.exists():
        out.write_bytes(build_initfs(bytes.fromhex(entry.read_text())))
    else:
        shutil.copyfile(build_initfs_probe(Path(sys.argv[2]), "kernel-smoke"), out)
    """
)


def test_bisect_names_the_commit_whose_initfs_spins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "initfs-repo"
    repo.mkdir()
    git_in(repo, "init", "-q", "-b", "main")
    shas = [
        commit_files(repo, "Boot hil's probe", {"build.py": BUILD}),
        commit_files(repo, "Describe the repo", {"README": "The initfs of a kernel gate.\n"}),
        commit_files(repo, "Start with a tight loop", {"entry.hex": "ebfe"}),  # jmp $: the bootstrap never reports
        commit_files(repo, "Say more in the README", {"README": "The initfs of a kernel gate, built by build.py.\n"}),
    ]
    initfs, log_dir = tmp_path / "boot.initfs", tmp_path / "bisect"
    build = f"PYTHONPATH={SOURCE_ROOT} {sys.executable} build.py {initfs} {tmp_path / 'probe-cache'}"
    run = ["hil", "run", "kernel-smoke", "--accel", "tcg", "--packages", str(PACKAGES), "--initfs", str(initfs)]
    code, printed, result, signature, _ = run_bisect(repo, shas[0], shas[-1], build, 2, log_dir, run, capsys)
    assert code == 0, printed
    assert result["culprit"] == [shas[2]]
    assert signature.startswith("hang:"), signature
