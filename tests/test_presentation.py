"""What people read: every command's output at 80 columns in a pipe (a CI log), with nothing cut or
wrapped back to column 0; a failing step shows what the guest printed; transcripts without hil's framing.

The CLI runs as users run it: a `hil` subprocess with COLUMNS=80 and stdout a pipe. Runs boot the real
reference guest from a snapshot (one cold boot for the module, then restores of about a second).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from hil.cli_run import EXIT_CODES
from hil.guest.shell import ShellDialect
from hil.image.redox.pkgar import PackageFile
from hil.image.redox.synthetic import write_repo
from hil.reports.live import ProgressTable
from hil.results import Cell, CellProgress
from hil.scenario import builtin_names, load_scenario, scenarios_tagged

WIDTH = 80
FRAMING = re.compile(r"printf '%s%s|HB[0-9a-f]{12}|HE[0-9a-f]{12}|; eval ")


def hil(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(WIDTH)}
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip


def assert_fits(text: str) -> None:
    long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not long, "lines over 80 columns:\n" + "\n".join(long)


def words(text: str) -> str:
    """The text with its wrapping undone: what a reader sees, whatever the width."""
    return " ".join(text.split())


# --- hil list, hil doctor, hil run --help: no guest needed ------------------------------------------------


def test_list_fits_80_columns_with_whole_names_descriptions_guests_and_tags() -> None:
    done = hil("list")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_fits(done.stdout)
    for name in builtin_names():
        scenario = load_scenario(name)
        assert re.search(rf"^  {re.escape(name)}  ", done.stdout, re.MULTILINE), name
        assert words(scenario.description) in words(done.stdout), name
        assert f"guest {scenario.guest}; tags: {', '.join(scenario.tags)}" in done.stdout
    lines = done.stdout.splitlines()
    continued = [line for line in lines if line and not line.startswith(" ") and not line.endswith(")")]
    assert continued == [], "a description wrapped back to column 0"
    for section in ("Scenarios", "Suites", "Guests"):
        assert any(line.startswith(section) for line in lines)
    assert re.search(r"^  gate  ", done.stdout, re.MULTILINE) and "tokio-examples" in done.stdout


def test_list_json_has_scenarios_with_tags_suites_and_guests() -> None:
    done = hil("list", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert [s["name"] for s in data["scenarios"]] == builtin_names()
    boot = next(s for s in data["scenarios"] if s["name"] == "boot")
    assert boot["tags"] == list(load_scenario("boot").tags) and boot["guest"] == "reference"
    gate = next(s for s in data["suites"] if s["name"] == "gate")
    assert gate["runs"] > 1 and "boot" in gate["scenarios"]
    assert {g["name"] for g in data["guests"]} >= {"reference", "redox"}


def test_tags_select_scenarios_and_an_unknown_tag_is_usage() -> None:
    storage = scenarios_tagged(["storage"])
    assert storage and all("storage" in load_scenario(name).tags for name in storage)
    done = hil("list", "--tag", "storage", "--json")
    assert [s["name"] for s in json.loads(done.stdout)["scenarios"]] == storage
    wrong = hil("list", "--tag", "no-such-tag")
    assert wrong.returncode == 2 and "storage" in wrong.stdout and "Traceback" not in wrong.stdout + wrong.stderr
    assert len(wrong.stdout.strip().splitlines()) == 1


def test_run_tag_runs_every_tagged_scenario() -> None:
    """`--tag` makes the run set; a bad option then names each tagged run, before anything boots."""
    done = hil("run", "--tag", "storage", "--memory", "10")
    assert done.returncode == 2, done.stdout + done.stderr
    assert any(name in done.stdout for name in scenarios_tagged(["storage"])), done.stdout


def test_doctor_fits_80_columns() -> None:
    done = hil("doctor")
    assert_fits(done.stdout)
    lines = done.stdout.splitlines()
    assert all(line.startswith(("ok  ", "!!  ", " ")) for line in lines), done.stdout
    for label in ("QEMU", "reference guest", "accelerator", "cache folder"):
        assert re.search(rf"^(ok|!!)  {label}  ", done.stdout, re.MULTILINE), label


def test_run_help_is_grouped_with_examples_and_exit_codes() -> None:
    done = hil("run", "--help")
    assert done.returncode == 0
    assert_fits(done.stdout)
    headings = [line for line in done.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")]
    for heading in ("what to run", "machine", "Redox guests only", "run sets", "reports", "examples",
                    "exit codes"):  # fmt: skip
        assert any(line.startswith(heading) for line in headings), (heading, headings)
    redox = done.stdout.split("Redox guests only", 1)[1].split("\n\n", 1)[0]
    assert "--packages" in redox and "--kernel" in redox and "--smp" not in redox
    for code, _ in EXIT_CODES:
        assert re.search(rf"^  {re.escape(code)}\s", done.stdout, re.MULTILINE)


# --- the live table, rendered as a terminal of 80 columns ---------------------------------------------------


def test_live_table_keeps_names_status_try_and_elapsed_at_80_columns() -> None:
    now = time.monotonic()
    cells = [
        CellProgress(Cell("nvme-uring", "nvme-uring", 2, 1), "running", 1, "step 3/7: " + "case qd=32 " * 8, now - 12),
        CellProgress(Cell("xhci-storage", "xhci-storage", 4, 2), "queued"),
        CellProgress(Cell("kernel-smoke", "kernel-smoke", 1, 1), "infra", 2, "QEMU exited " * 6, now - 99, now - 2),
    ]
    console = Console(width=WIDTH, force_terminal=True, color_system=None, record=True)
    console.print(ProgressTable(cells))
    text = console.export_text()
    assert_fits(text)
    for title in ("nvme-uring[smp=2,run=1]", "xhci-storage[smp=4,run=2]", "kernel-smoke[smp=1,run=1]"):
        assert title in text
    assert "running" in text and "queued" in text and "infra" in text and "97.0 s" in text
    assert len(text.strip().splitlines()) == 2 + 1 + len(cells), "a row took more than one line"


# --- hil bisect --------------------------------------------------------------------------------------------


class _Subjects:
    def subject(self, commit: str) -> str:
        return f"scheduler: hold the run-queue lock across the wakeup of {commit[:4]} (long subject)"


def test_bisect_progress_and_result_fit_80_columns() -> None:
    from hil.bisect import (
        BisectResult,
        CommitEvidence,
        FailureRate,
        Outcome,
        RunRecord,
        _EventPrinter,
        print_bisect_result,  # fmt: skip
    )

    out = Console(width=WIDTH, file=open(os.devnull, "w"), record=True)  # noqa: SIM115
    printer = _EventPrinter(out)
    commits = [f"{n:x}" * 40 for n in range(1, 5)]
    long_signature = "hang:deadlock/idle:stage:ready in helper-daemon-with-a-long-name at its start-up wait"
    for index, commit in enumerate(commits):
        printer({"event": "run", "commit": commit, "index": index, "verdict": "hang", "signature": long_signature,
                 "outcome": "match", "seconds": 22.4, "endpoint": index == 0})  # fmt: skip
    printer({"event": "build", "commit": commits[1], "ok": False})
    evidence = {c: CommitEvidence(c, [RunRecord(c, 1, "pass", None, Outcome.PASS)]) for c in commits}
    evidence[commits[2]].marked = "bad"
    result = BisectResult([commits[2]], 0.97, FailureRate(6, 4), long_signature, evidence,
                          dict.fromkeys(commits, 0.5), 12, 4, 1, 3, "confident")  # fmt: skip
    print_bisect_result(out, result, _Subjects(), Path("/tmp/bisect-logs"))
    text = out.export_text()
    print(text)
    assert_fits(text)
    assert len(re.findall(r"^\s*(endpoint )?run [0-9a-f]{12} #\d+ +22 s ", text, re.MULTILINE)) == 4
    rows = [line for line in text.splitlines() if re.match(r"[0-9a-f]{12} ", line)]
    assert len(rows) == 4 and all("scheduler: hold" in row for row in rows), text
    assert re.search(r"^culprit: +3{12} scheduler", text, re.MULTILINE)


# --- transcripts ------------------------------------------------------------------------------------------


def test_unframed_transcript_reads_as_typed() -> None:
    shell = ShellDialect()
    wrapped = shell.wrap("echo 'it''s'; false")
    token = wrapped.begin.pattern[2:14]
    lines = [f"hil# {wrapped.line}", f"HB{token}", "its", "", f"HE{token}:1", "hil# "]
    assert shell.unframe(lines) == ["hil# echo 'it''s'; false", "its", "hil# "]


def test_typeahead_echo_and_redraw_show_once() -> None:
    """The guest echoes a command typed before its prompt, then redraws it after `hil# `: one line shows."""
    shell = ShellDialect()
    wrapped = shell.wrap("echo looking; ls /nonexistent; false")
    token = wrapped.begin.pattern[2:14]
    cut = wrapped.line.index("/nonexis") + len("/nonexis")
    same_line = [f"HE{'0' * 12}:0", wrapped.line[:cut] + "hil# " + wrapped.line, f"HB{token}", "looking"]
    assert shell.unframe(same_line) == ["hil# echo looking; ls /nonexistent; false", "looking"]
    eval_at = wrapped.line.index("eval ") + len("eval ")
    end_at = wrapped.line.index("; printf '\\n")
    across = [wrapped.line[:eval_at], wrapped.line[eval_at:] + "hil# " + wrapped.line[:end_at],
              wrapped.line[end_at:], f"HB{token}", "looking", "", f"HE{token}:1", "hil# "]  # fmt: skip
    assert shell.unframe(across) == ["hil# echo looking; ls /nonexistent; false", "looking", "hil# "]


# --- real runs --------------------------------------------------------------------------------------------

FAILING = """
name = "prints-then-fails"
guest = "reference"
[machine]
snapshot = true
[[steps]]
name = "kernel answers"
run = "uname -sr"
[[steps]]
name = "disk is there"
run = "echo looking for the disk; echo 'error: no disk at /dev/nvme0n1' >&2; ls /nonexistent; false"
"""
PASSING = FAILING.replace("prints-then-fails", "answers").split("[[steps]]\nname = \"disk")[0]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory, reference_image) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("presentation")
    paths = {"failing": folder / "failing.toml", "passing": folder / "passing.toml"}
    paths["failing"].write_text(FAILING)
    paths["passing"].write_text(PASSING)
    return paths


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Report folders with short names: a path is printed whole, so it must fit the width itself."""
    with tempfile.TemporaryDirectory(prefix="p", dir="/tmp") as name:
        yield Path(name)


@pytest.mark.qemu
def test_a_failing_step_shows_what_the_guest_printed(scenarios: dict[str, Path], short_dir: Path) -> None:
    done = hil("run", str(scenarios["failing"]), "--report-dir", str(short_dir / "run"))
    assert done.returncode == 1, done.stdout + done.stderr
    print(done.stdout)
    assert_fits(done.stdout)
    for line in ("looking for the disk", "error: no disk at /dev/nvme0n1", "ls: /nonexistent: No such file"):
        assert re.search(rf"^\s+\| {re.escape(line)}", done.stdout, re.MULTILINE), line
    assert "exit status 1, expected 0" in done.stdout
    assert "boot stages" not in done.stdout, "a clean boot's stage table is noise after a step failed"
    assert not FRAMING.search(done.stdout)


@pytest.mark.qemu
def test_the_stage_table_is_not_printed_twice(scenarios: dict[str, Path], short_dir: Path) -> None:
    done = hil("run", str(scenarios["failing"]), "--no-snapshot", "--report-dir", str(short_dir / "run"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert_fits(done.stdout)
    assert len(re.findall(r"^\s+stage\s+ready\b", done.stdout, re.MULTILINE)) == 1, done.stdout
    assert "boot stages" not in done.stdout


@pytest.mark.qemu
def test_run_set_progress_and_summary_fit_80_columns(scenarios: dict[str, Path], short_dir: Path) -> None:
    junit = short_dir / "j.xml"
    done = hil("run", str(scenarios["passing"]), str(scenarios["failing"]), "-j", "2",
               "--report-dir", str(short_dir / "set"), "--junit", str(junit))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    print(done.stdout)
    assert_fits(done.stdout)
    assert re.search(r"^\[\d/2\] answers\[run=1\]: pass \(\d+\.\d s\)", done.stdout, re.MULTILINE)
    assert re.search(r"^\[\d/2\] prints-then-fails\[run=1\]: fail \(\d+\.\d s\)", done.stdout, re.MULTILINE)
    summary = done.stdout.split("run set answers+prints-then-fails", 1)[1]
    assert re.search(r"answers\[run=1\]\s+│ pass\s+│\s+[\d.]+ │\s+[\d.]+ │\s+1\b", summary), summary
    assert re.search(r"prints-then-fails\[run=1\]\s+│ fail ", summary), summary
    assert re.search(r"verdict: fail\s+1 pass, 1 fail of 2 runs", summary)
    transcript = junit.read_text()
    assert "looking for the disk" in transcript and not FRAMING.search(transcript), transcript


# --- exit codes of bad input: usage (2), one line, the fix --------------------------------------------------


@pytest.fixture
def nested_packages(tmp_path: Path) -> Path:
    """A build tree's layout: the packages are in x86_64-unknown-redox/, the parent is what gets given."""
    inner = tmp_path / "repo" / "x86_64-unknown-redox"
    inner.mkdir(parents=True)
    for name in ("kernel", "bootloader", "base-initfs"):
        (inner / f"{name}.toml").write_text(f'name = "{name}"\nversion = "1"\ntarget = "x86_64-unknown-redox"\n')
        (inner / f"{name}.pkgar").write_bytes(b"")  # empty: damaged
    return inner.parent


def one_line_usage(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_the_parent_of_the_package_folder_is_usage_with_the_folder_to_give(nested_packages: Path) -> None:
    inner = nested_packages / "x86_64-unknown-redox"
    for command in (["run", "kernel-smoke"], ["image", "assemble", "--out", str(nested_packages / "x.img")]):
        line = one_line_usage(hil(*command, "--packages", str(nested_packages)))
        assert f"give {inner}" in line, line


def test_a_damaged_package_is_usage_found_before_any_run(nested_packages: Path, short_dir: Path) -> None:
    """Found when the options are checked: exit 2, the file, what is wrong and the fix, and no run folder or
    report (an infra verdict there would blame the host for the user's file). Nothing boots."""
    inner = str(nested_packages / "x86_64-unknown-redox")
    line = one_line_usage(hil("image", "assemble", "--packages", inner, "--out", str(short_dir / "x.img")))
    assert "kernel.pkgar: truncated" in line and "Fix:" in line
    line = one_line_usage(hil("run", "kernel-smoke", "--packages", inner, "--report-dir", str(short_dir / "one")))
    assert f"{inner}/kernel.pkgar: truncated" in line and "Fix:" in line
    assert not (short_dir / "one").exists(), "a run folder (and report) for a run that never started"
    line = one_line_usage(hil("run", "kernel-smoke", "--packages", inner, "--smp", "1,2", "--retry-infra", "2",
                              "--report-dir", str(short_dir / "set")))  # fmt: skip
    assert "kernel.pkgar: truncated" in line and "Fix:" in line
    assert not (short_dir / "set").exists(), "a run set started with a damaged package"


def test_a_package_with_corrupt_file_data_is_usage_found_before_any_run(tmp_path: Path, short_dir: Path) -> None:
    """Sound header, signature and entry table, one flipped byte in the kernel's data: found by its blake3
    when the options are checked (exit 2, the file and entry named), before a run folder exists."""
    inner = tmp_path / "x86_64-unknown-redox"
    write_repo(inner, {"kernel": [PackageFile("boot/kernel", b"\x7fELF" + bytes(4096))],
                       "bootloader": [PackageFile("boot/bootloader.bios", bytes(4096))]})  # fmt: skip
    kernel = bytearray((inner / "kernel.pkgar").read_bytes())
    kernel[-100] ^= 1
    (inner / "kernel.pkgar").write_bytes(kernel)
    line = one_line_usage(hil("run", "kernel-smoke", "--packages", str(inner), "--report-dir", str(short_dir / "r")))
    assert "kernel.pkgar: bad blake3 for 'boot/kernel'" in line and "Fix:" in line, line
    assert not (short_dir / "r").exists(), "a run folder for a run that never started"


def test_sizes_and_memory_below_the_least_say_the_least() -> None:
    line = one_line_usage(hil("run", "boot", "--memory", "10"))
    assert "--memory 128" in line
    line = one_line_usage(hil("image", "assemble", "--packages", "/", "--out", "/tmp/x.img", "--size", "4M"))
    assert "4 MiB is too small" in line and "--size 5M" in line
