"""hil bisect without QEMU: the model, the search on simulated commits, and the git driver on a scratch repo.

The git tests stand a tiny Python script in for `hil run`: it writes a report.json whose verdict depends on
the checked-out files, so the whole path (git bisect, build command, runs, report reading, reset) runs for
real in a fraction of a second.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    Git,
    GitLab,
    Outcome,
    RunRecord,
    bisect_repo,
    hil_argv,
    outcome_of,
    parallel_runs,
    rate_interval,
    with_timeout_factor,
)
from hil.bisect_step import MAX_PASSES, RateBelief, StepSession, run_step
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
    assert RateBelief.given(0.5).passes_needed(0.95) == 5  # 0.5^5 = 3.1 % of bad commits pass them all
    assert RateBelief.given(0.9).passes_needed(0.95) == 2
    assert RateBelief.given(0.35).passes_needed(0.95) == 7  # 0.65^5 = 11.6 %: 5 runs were not enough
    unknown = RateBelief.learned(0, 0)
    assert unknown.passes_needed(0.95) > 10  # p could be small: a pass says little
    assert RateBelief.learned(9, 1).passes_needed(0.95) < unknown.passes_needed(0.95)
    assert RateBelief.learned(0, 0).passes_needed(0.999) is None  # more than MAX_PASSES: never a good


def test_the_failure_rate_interval_holds_the_share_and_narrows_with_runs() -> None:
    low, high = rate_interval(6, 0)
    assert 0.65 < low < 0.8 and high == 1.0  # a bug shown in all 6 runs: high, not 0.79
    assert rate_interval(0, 6)[0] == 0.0
    wide, narrow = rate_interval(5, 5), rate_interval(50, 50)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


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

    builds: list[str] = field(default_factory=list)

    def build(self, commit: str) -> bool:
        self.builds.append(commit)
        return int(commit) not in self.broken

    def restore(self, commit: str) -> bool:
        return True

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
    # The rate comes from the runs alone: every run of a bad commit failed.
    assert result.rate.estimate == 1.0 and result.rate.matches >= 2 and result.rate.passes == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_flaky_bug_is_found_with_the_confidence_asked_for(seed: int) -> None:
    lab = SimulatedLab(culprit=6, p=0.5, seed=seed)
    result = FlakyBisect(lab, "0", COMMITS, BisectSettings(runs=4, confidence=0.99)).run()
    assert result.culprit == ["6"] and result.confidence >= 0.99
    low, high = result.rate.interval()
    assert low < result.rate.estimate < high and result.rate.runs >= 2
    # However the search moves, it builds each commit once.
    assert len(lab.builds) == len(set(lab.builds)) == result.builds
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


def _runner(*verdicts: tuple[str | None, str | None]):
    queue = list(verdicts)
    return lambda folder: (*queue.pop(0), "")


def _step(tmp_path: Path, *verdicts: tuple[str | None, str | None], **options: object):
    return run_step(["x"], log_dir=tmp_path, run=_runner(*verdicts), **options)  # type: ignore[arg-type]


PASS, HANG, INFRA, OTHER = ("pass", None), ("hang", SIGNATURE), ("infra", None), ("crash", "crash:x:y")


def test_run_step_says_bad_at_the_first_run_with_the_bug(tmp_path: Path) -> None:
    bad = _step(tmp_path, PASS, HANG, signature=SIGNATURE, failure_rate=0.5)
    assert bad.code == BAD_EXIT and len(bad.records) == 2


def test_run_step_says_good_only_after_enough_passes_for_the_rate(tmp_path: Path) -> None:
    good = _step(tmp_path, *[PASS] * 7, runs=2, signature=SIGNATURE, failure_rate=0.35)
    assert good.code == GOOD_EXIT and len(good.records) == 7 and good.belief.miss(7) <= 0.05
    sized = _step(tmp_path, PASS, OTHER, *[PASS] * 4, runs=2, failure_rate=0.5, signature=SIGNATURE)
    assert sized.code == GOOD_EXIT and sized.count(Outcome.PASS) == 5


@pytest.mark.parametrize(
    "verdicts",
    [(PASS, INFRA, INFRA, INFRA), (PASS, OTHER, OTHER, OTHER), (INFRA, OTHER, INFRA)],
    ids=["one-pass-then-infra", "one-pass-then-other-failures", "nothing-informative"],
)
def test_run_step_cannot_tell_from_uninformative_runs(tmp_path: Path, verdicts: tuple) -> None:
    step = _step(tmp_path, *verdicts, runs=3, signature=SIGNATURE, failure_rate=0.5)
    assert step.code == SKIP_EXIT and "told nothing" in step.why


def test_run_step_without_enough_passes_within_its_limit_says_skip(tmp_path: Path) -> None:
    step = _step(tmp_path, *[PASS] * MAX_PASSES, confidence=0.999)  # p unknown: 40 passes cannot show 99.9 %
    assert step.code == SKIP_EXIT and step.needed is None and len(step.records) == MAX_PASSES


def test_run_step_learns_the_rate_and_signature_from_earlier_steps_of_the_session(tmp_path: Path) -> None:
    first = _step(tmp_path, PASS, HANG, key="s1", commit="c1")
    assert first.code == BAD_EXIT and StepSession.open(tmp_path, "s1").signature == SIGNATURE
    unknown = RateBelief.learned(0, 0).passes_needed(0.95)
    second = _step(tmp_path, OTHER, *[PASS] * 30, key="s1", commit="c2")  # another failure is "other" now
    assert second.code == GOOD_EXIT and second.count(Outcome.OTHER) == 1
    assert second.needed is not None and unknown is not None and second.needed < unknown
    assert StepSession.open(tmp_path, "s1").learned() == (1, 1)
    assert StepSession.open(tmp_path, "another session").steps == []  # a new git bisect starts afresh


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
    rate = ["--failure-rate", "0.5"]
    assert hil_main(["bisect", "run-step", "--signature", SIGNATURE, *rate, *log, *command]) == GOOD_EXIT


def test_run_step_help_is_help_and_a_bad_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        hil_main(["bisect", "run-step", "--help"])
    assert done.value.code == 0 and "git bisect run" in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        hil_main(["bisect", "run-step", "--failure-rate", "2", "--", "hil", "run", "boot"])
    error = capsys.readouterr().err
    assert done.value.code == 2 and len(error.strip().splitlines()) == 1 and "--failure-rate" in error


def test_parallel_runs_are_limited_by_the_cores_each_vm_needs() -> None:
    assert parallel_runs(4, ["hil", "run", "boot", "--smp", "1"], cores=2) == (2, 1)
    assert parallel_runs(4, ["hil", "run", "boot", "--smp", "2"], cores=2) == (1, 2)
    assert parallel_runs(2, ["hil", "run", "boot", "--smp=1,4"], cores=8) == (2, 4)
    assert parallel_runs(8, ["hil", "run", "boot"], cores=4)[0] == 2  # no --smp: the guest default, 2


@pytest.mark.parametrize("seed", [1, 2])
def test_several_runs_at_once_name_the_same_culprit(seed: int) -> None:
    one = FlakyBisect(SimulatedLab(culprit=6, p=0.6, seed=seed), "0", COMMITS, BisectSettings(runs=4)).run()
    two = FlakyBisect(SimulatedLab(culprit=6, p=0.6, seed=seed), "0", COMMITS, BisectSettings(runs=4, jobs=2)).run()
    assert one.culprit == two.culprit == ["6"]
    assert all(len(e.runs) % 2 == 0 for c, e in two.evidence.items() if c != COMMITS[-1])  # runs go in pairs


def test_a_spent_budget_says_most_likely_culprit(
    scratch_repo: tuple[Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, shas = scratch_repo
    fake = tmp_path / "fake_run.py"
    fake.write_text(FAKE_RUN)
    code = hil_main(["bisect", "--repo", str(repo), "--good", shas[0], "--bad", shas[-1], "--max-runs", "1",
                     "--log-dir", str(tmp_path / "log"), "--", sys.executable, str(fake), str(repo)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1 and "most likely culprit" in printed and "short of the 0.95 asked" in printed
    assert re.search(r"failure rate: +1.00", printed)


def test_a_build_is_kept_by_content_and_restored_when_the_search_returns(
    scratch_repo: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repo, shas = scratch_repo
    artifact, counter = tmp_path / "out" / "image", tmp_path / "builds"
    build = f"mkdir -p {artifact.parent} && (test -f bug && echo bad || echo good) > {artifact} && echo x >> {counter}"
    lab = GitLab(Git(repo), build, ["true"], tmp_path / "log", [artifact])
    assert lab.build(shas[0]) and lab.build(shas[3])
    assert artifact.read_text() == "bad\n"
    assert lab.restore(shas[0]) and artifact.read_text() == "good\n"  # the earlier build, not a new one
    assert counter.read_text().count("x") == 2 and not (repo / "bug").exists()
    assert not lab.restore(shas[4])  # never built: the caller builds it
    assert lab.content_key(shas[0]) != lab.content_key(shas[3])


@functools.cache
def _bench() -> Any:
    path = Path(__file__).resolve().parent.parent / "bench" / "bisect_efficiency.py"
    spec = importlib.util.spec_from_file_location("bisect_efficiency", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up there
    sys.path.insert(0, str(path.parent))  # as when run as a script: its sibling bench/target.py
    try:
        spec.loader.exec_module(sys.modules[spec.name])
    finally:
        sys.path.remove(str(path.parent))
    return sys.modules[spec.name]


def _mutual_information(prior_bad: float, p: float) -> float:
    """I(X; Y) of one run: X bad with `prior_bad`, Y a failure with p when bad, never when good."""
    h = _bench().binary_entropy
    return h(prior_bad * p) - prior_bad * h(p)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.8, 0.95])
def test_the_bench_capacity_is_the_maximum_information_of_one_run(p: float) -> None:
    direct = max(_mutual_information(prior, p) for prior in np.linspace(0.0005, 0.9995, 2000))
    assert _bench().z_capacity(p) == pytest.approx(direct, abs=1e-5)


def test_the_bench_bound_counts_blocks_and_the_error_reached() -> None:
    bench = _bench()
    assert bench.block_sizes(6, {2, 3}) == [1, 3, 1, 1]
    assert bench.bits_needed([1] * 64, 0.0) == pytest.approx(6.0)
    assert bench.bits_needed([1] * 64, 0.05) < bench.bits_needed([1] * 64, 0.01) < 6.0
    assert bench.bits_needed([2] * 32, 0.0) == pytest.approx(5.0)


def test_the_failure_rate_prior_leans_low_and_keeps_a_deterministic_bug_possible() -> None:
    """The tilt that keeps the search calibrated at low rates (bench/bisect_efficiency.py, p = 0.3)."""
    from hil.bisect import P_GRID

    model = CulpritModel(8)
    assert model.p_estimate() < float(P_GRID.mean())  # before any run: below the flat prior's mean
    assert np.isfinite(model.log_post[:, -1]).all()  # p = 1 stays possible
    for _ in range(6):
        model.record(7, Outcome.MATCH)  # the bad commit failed every time
    assert model.p_estimate() > 0.8
