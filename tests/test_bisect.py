"""hil bisect without QEMU: the model, the search on simulated commits, and the git driver on a scratch repo.

The git tests stand a tiny Python script in for `hil run`: it writes a report.json whose verdict depends on
the checked-out files, so the whole path (git bisect, build command, runs, report reading, reset) runs for
real in a fraction of a second.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from hil.bisect import (
    BAD_EXIT,
    GOOD_EXIT,
    SKIP_EXIT,
    BisectError,
    BisectSettings,
    CulpritModel,
    FlakyBisect,
    Outcome,
    RunRecord,
    bisect_repo,
    hil_argv,
    outcome_of,
    run_step,
    runs_for_confidence,
    with_timeout_factor,
)
from hil.cli import main as hil_main

SIGNATURE = "hang:deadlock/idle:stage:ready"


def test_runs_are_sorted_by_verdict_and_signature() -> None:
    assert outcome_of("pass", None, SIGNATURE) == Outcome.PASS
    assert outcome_of("hang", SIGNATURE, SIGNATURE) == Outcome.MATCH
    assert outcome_of("crash", "crash:Oops:foo", SIGNATURE) == Outcome.OTHER
    assert outcome_of("infra", None, SIGNATURE) == Outcome.SKIP
    assert outcome_of(None, None, SIGNATURE) == Outcome.SKIP
    assert outcome_of("fail", "fail:step:x", None) == Outcome.MATCH  # no signature yet: any failure


def test_runs_needed_for_a_good_verdict() -> None:
    assert runs_for_confidence(0.5, 0.95) == 5  # 1 - 0.5^5 = 0.969
    assert runs_for_confidence(0.9, 0.95) == 2
    assert runs_for_confidence(1.0, 0.95) == 1


def test_a_match_proves_every_later_commit_innocent_of_introducing_it() -> None:
    model = CulpritModel(8)
    model.record(3, Outcome.MATCH)
    probabilities = model.culprit_probabilities()
    assert probabilities[4:].sum() == 0 and probabilities[:4].sum() == pytest.approx(1)


def test_passes_shift_the_culprit_later_and_teach_about_p() -> None:
    model = CulpritModel(8)
    before = model.good_probability(3)
    for _ in range(4):
        model.record(3, Outcome.PASS)
    assert model.good_probability(3) > before
    model.record(7, Outcome.MATCH)
    model.record(7, Outcome.MATCH)
    assert model.p_estimate() > 0.5


def test_the_next_test_is_informative_and_never_the_bad_commit_or_an_untestable_one() -> None:
    model = CulpritModel(16)
    model.testable[7] = False
    gains = model.information_gains()
    assert not np.isfinite(gains[7]) and not np.isfinite(gains[15])
    choice = model.choose()
    assert choice is not None and 2 <= choice <= 10  # near the middle, a little early (a pass is weak evidence)


def test_untestable_commits_join_the_next_testable_one_in_a_block() -> None:
    model = CulpritModel(6)
    model.testable[[1, 2]] = False
    assert model.blocks() == [[0], [1, 2, 3], [4], [5]]


@dataclass
class SimulatedLab:
    """Commit i is bad from `culprit` on; a bad run shows the bug with `p`; some commits do not build."""

    culprit: int
    p: float
    seed: int = 1
    broken: set[int] = field(default_factory=set)
    other: set[int] = field(default_factory=set)  # commits where another bug hides this one
    marks: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def build(self, commit: str) -> bool:
        return int(commit) not in self.broken

    def run(self, commit: str, index: int) -> RunRecord:
        if int(commit) in self.other:
            return RunRecord(commit, index, "crash", "crash:Oops:other_bug", Outcome.SKIP)
        failed = int(commit) >= self.culprit and self.rng.random() < self.p
        return RunRecord(commit, index, "hang" if failed else "pass", SIGNATURE if failed else None, Outcome.SKIP)

    def mark(self, commit: str, term: str) -> str:
        self.marks.append((commit, term))
        return ""


COMMITS = [str(i) for i in range(1, 17)]


def test_a_reliable_bug_is_found_with_few_runs() -> None:
    lab = SimulatedLab(culprit=11, p=1.0)
    result = FlakyBisect(lab, "0", COMMITS, BisectSettings(runs=2)).run()
    assert result.found and result.culprit == ["11"] and result.signature == SIGNATURE
    assert result.runs <= 12 and ("11", "bad") in lab.marks and ("10", "good") in lab.marks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_flaky_bug_is_found_with_the_confidence_asked_for(seed: int) -> None:
    lab = SimulatedLab(culprit=6, p=0.5, seed=seed)
    result = FlakyBisect(lab, "0", COMMITS, BisectSettings(runs=4, confidence=0.99)).run()
    assert result.culprit == ["6"] and result.confidence >= 0.99
    assert 0.2 < result.p_estimate < 0.8
    # Every commit before the culprit that was tested ends up likely good.
    assert all(p > 0.9 for c, p in result.good_probability.items() if int(c) < 6)


def test_a_commit_that_does_not_build_is_skipped_and_blamed_together_with_its_neighbour() -> None:
    lab = SimulatedLab(culprit=9, p=1.0, broken={8})
    result = FlakyBisect(lab, "0", COMMITS, BisectSettings(runs=2)).run()
    assert result.found and result.culprit == ["8", "9"]  # no test can split them
    assert ("8", "skip") in lab.marks and result.evidence["8"].build_failed


def test_another_bug_counts_neither_way() -> None:
    lab = SimulatedLab(culprit=9, p=1.0, other={7})
    result = FlakyBisect(lab, "0", COMMITS, BisectSettings(runs=2)).run()
    assert result.culprit == ["7", "8", "9"] or result.culprit == ["9"]
    assert result.evidence["7"].count(Outcome.MATCH) == 0


def test_a_bug_that_does_not_reproduce_stops_the_bisection() -> None:
    with pytest.raises(BisectError, match="does not reproduce"):
        FlakyBisect(SimulatedLab(culprit=99, p=1.0), "0", COMMITS, BisectSettings(runs=2)).run()


def test_a_good_commit_showing_the_bug_stops_the_bisection() -> None:
    lab = SimulatedLab(culprit=0, p=1.0)
    with pytest.raises(BisectError, match="good commit"):
        FlakyBisect(lab, "0", COMMITS, BisectSettings(runs=2)).run()


def test_run_step_exit_codes() -> None:
    def runs(*verdicts: tuple[str | None, str | None]):
        queue = list(verdicts)
        return lambda folder: (*queue.pop(0), "")

    bad = run_step(["x"], runs=3, signature=SIGNATURE, run=runs(("pass", None), ("hang", SIGNATURE)))
    assert bad[0] == BAD_EXIT and len(bad[1]) == 2
    good = run_step(
        ["x"], runs=2, signature=SIGNATURE, run=runs(("pass", None), ("crash", "crash:x:y"), ("pass", None))
    )
    assert good[0] == GOOD_EXIT and len(good[1]) == 3
    skip = run_step(["x"], runs=1, signature=SIGNATURE, run=runs(("infra", None), ("infra", None)))
    assert skip[0] == SKIP_EXIT
    sized = run_step(["x"], runs=2, failure_rate=0.5, confidence=0.95, run=runs(*[("pass", None)] * 5))
    assert sized[0] == GOOD_EXIT and len(sized[1]) == 5


def test_hil_commands_run_this_hil_and_others_run_as_given() -> None:
    argv, env = hil_argv(["hil", "run", "boot"])
    assert argv[:3] == [sys.executable, "-m", "hil.cli"] and argv[3:] == ["run", "boot"]
    assert str(Path(__file__).resolve().parent.parent) in env["PYTHONPATH"]
    assert hil_argv(["echo", "hi"])[0] == ["echo", "hi"]
    assert with_timeout_factor(["hil", "run", "boot"], 0.25)[-2:] == ["--timeout-factor", "0.25"]
    assert with_timeout_factor(["hil", "run", "boot", "--timeout-factor", "2"], 0.25).count("--timeout-factor") == 1


# --- the git driver on a scratch repository --------------------------------------------------------------------

FAKE_RUN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    repo, report_dir = Path(sys.argv[1]), Path(sys.argv[sys.argv.index("--report-dir") + 1])
    report_dir.mkdir(parents=True, exist_ok=True)
    bug = (repo / "bug").exists()
    report = {"verdict": "hang", "signature": "SIGNATURE", "reason": "frozen"} if bug else {"verdict": "pass"}
    (report_dir / "report.json").write_text(json.dumps(report))
    """
).replace("SIGNATURE", SIGNATURE)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def _commit(repo: Path, message: str, files: dict[str, str | None]) -> str:
    for name, content in files.items():
        if content is None:
            (repo / name).unlink()
        else:
            (repo / name).write_text(content)
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def scratch_repo(tmp_path: Path) -> tuple[Path, list[str]]:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    shas = [_commit(repo, "start", {"readme": "hello\n"})]
    shas.append(_commit(repo, "break the build", {"broken": "1\n"}))
    shas.append(_commit(repo, "fix the build", {"broken": None}))
    shas.append(_commit(repo, "add the bug", {"bug": "1\n"}))
    shas.append(_commit(repo, "unrelated", {"other": "x\n"}))
    shas.append(_commit(repo, "unrelated too", {"other": "y\n"}))
    return repo, shas


def test_git_bisect_names_the_culprit_and_resets(scratch_repo: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, shas = scratch_repo
    fake = tmp_path / "fake_run.py"
    fake.write_text(FAKE_RUN)
    result, log_dir = bisect_repo(
        repo, shas[0], shas[-1], [sys.executable, str(fake), str(repo)], BisectSettings(runs=2),
        build="test ! -f broken", log_dir=tmp_path / "log",
    )  # fmt: skip
    assert result.found and result.culprit == [shas[3]] and result.signature == SIGNATURE
    assert result.evidence[shas[1]].build_failed or not result.evidence[shas[1]].runs
    assert _git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main" and not (repo / ".git" / "BISECT_LOG").exists()
    git_log = (log_dir / "git-bisect-log.txt").read_text()
    assert "first bad commit" in git_log and f"git bisect bad {shas[3]}" in git_log
    events = [json.loads(line) for line in (log_dir / "bisect-log.jsonl").read_text().splitlines()]
    kinds = {e["event"] for e in events}
    assert {"start", "build", "run", "mark", "result"} <= kinds
    run_folders = [e["report_dir"] for e in events if e["event"] == "run"]
    assert all((Path(folder) / "report.json").exists() for folder in run_folders)


def test_an_interrupted_bisection_still_resets_the_repository(
    scratch_repo: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, shas = scratch_repo

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("hil.bisect.run_hil", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bisect_repo(repo, shas[0], shas[-1], ["hil", "run", "boot"], BisectSettings(), log_dir=tmp_path / "log")
    assert _git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main" and not (repo / ".git" / "BISECT_LOG").exists()
    assert (tmp_path / "log" / "git-bisect-log.txt").exists()


def test_a_dirty_repository_is_refused(scratch_repo: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, shas = scratch_repo
    (repo / "readme").write_text("local change\n")
    with pytest.raises(Exception, match="uncommitted changes"):
        bisect_repo(repo, shas[0], shas[-1], ["true"], BisectSettings(), log_dir=tmp_path / "log")


def test_the_cli_run_step_for_git_bisect_run(scratch_repo: tuple[Path, list[str]], tmp_path: Path) -> None:
    repo, shas = scratch_repo
    fake = tmp_path / "fake_run.py"
    fake.write_text(FAKE_RUN)
    command = ["--", sys.executable, str(fake), str(repo)]
    log = ["--log-dir", str(tmp_path / "steps")]
    assert hil_main(["bisect", "run-step", "--runs", "2", *log, *command]) == BAD_EXIT
    _git(repo, "checkout", "-q", shas[1])
    assert hil_main(["bisect", "run-step", "--runs", "2", "--signature", SIGNATURE, *log, *command]) == GOOD_EXIT
