"""`hil bisect` end to end: a scratch repository of init hooks, real boots of the reference guest.

The repository defines the reference guest's /etc/hil.d hooks; its build command packs them into a cpio
laid over the initramfs. One commit makes init start a helper daemon and wait on a fifo for it; the daemon
signals only when a random byte is even, so about half the boots freeze before HIL-GUEST-READY with every
vCPU idle (hang:deadlock/idle:stage:ready). A later commit is unrelated. The bisection must name the
commit that added the wait.

Cost: about 15 boots (the endpoints, then the search; a frozen boot is detected in ~15 s with
--timeout-factor 0.25). The answer is statistical by nature: with the settings here a wrong culprit or an
unreproduced bad commit is expected in about 1.5 % of runs (measured on the simulated lab, 2000 trials).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import commit_files, git_in, run_bisect

pytestmark = [pytest.mark.qemu, pytest.mark.slow]

SOURCE_ROOT = Path(__file__).resolve().parent.parent

BUILD = textwrap.dedent(
    """
    # Packs hooks/*.sh into a cpio that hil lays over the reference guest's initramfs (/etc/hil.d).
    import sys
    from pathlib import Path

    from hil.image.cpio import NewcWriter

    archive = NewcWriter()
    for hook in sorted(Path("hooks").glob("*.sh")):
        archive.add_file(f"/etc/hil.d/{hook.name}", hook.read_bytes(), mode=0o755)
    Path(sys.argv[1]).write_bytes(archive.to_bytes())
    """
)

HELPER_HOOK = textwrap.dedent(
    """\
    #!/bin/sh
    # Start the helper daemon, then wait until it says it is ready.
    rm -f /run/helper.ready
    mkfifo /run/helper.ready
    (
        # The daemon's start-up races with the rest of boot; it only signals when it wins. (The kernel's
        # random pool is not seeded this early under TCG: the shell's RANDOM and the boot clock vary more.)
        read up _ </proc/uptime
        hundredths=${up#*.}
        roll=$((RANDOM + ${hundredths#0}))
        if [ $((roll % 2)) -eq 0 ]; then
            echo ready >/run/helper.ready
        else
            exec sleep 1000000  # stuck in its start-up, still alive: nobody will ever signal
        fi
    ) &
    read state </run/helper.ready
    echo "helper: $state"
    """
)


@pytest.fixture
def hooks_repo(tmp_path: Path) -> tuple[Path, list[str]]:
    repo = tmp_path / "hooks-repo"
    repo.mkdir()
    git_in(repo, "init", "-q", "-b", "main")
    greet = '#!/bin/sh\necho "hooks: hello"\n'
    return repo, [
        commit_files(repo, "Greet from an init hook", {"build.py": BUILD, "hooks/10-greet.sh": greet}),
        commit_files(repo, "Describe the hooks", {"README": "Init hooks of the test guest.\n"}),
        commit_files(repo, "Start the helper daemon and wait until it is ready", {"hooks/50-helper.sh": HELPER_HOOK}),
        commit_files(repo, "Greet more politely", {"hooks/10-greet.sh": '#!/bin/sh\necho "hooks: hello, world"\n'}),
        commit_files(repo, "Print the uptime", {"hooks/60-uptime.sh": "#!/bin/sh\ncat /proc/uptime\n"}),
    ]


def test_bisect_names_the_commit_that_made_boot_freeze_sometimes(
    reference_image, hooks_repo: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, shas = hooks_repo
    overlay = tmp_path / "hooks.cpio"
    log_dir = tmp_path / "bisect"
    build = f"PYTHONPATH={SOURCE_ROOT} {sys.executable} build.py {overlay}"
    run = ["hil", "run", "boot", "--accel", "tcg", "--initrd-overlay", str(overlay)]
    code, printed, result, signature, events = run_bisect(repo, shas[0], shas[-1], build, 4, log_dir, run, capsys)
    assert code == 0, printed
    assert result["culprit"] == [shas[2]] and result["confidence"] >= 0.95
    assert signature == "hang:deadlock/idle:stage:ready"
    runs = [e for e in events if e["event"] == "run"]
    assert any(r["outcome"] == "pass" for r in runs if r["commit"] == shas[-1]) or result["p"] > 0.4
    assert f"{shas[2]} is the first bad commit" in (log_dir / "git-bisect-log.txt").read_text() + printed
    assert git_in(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
