"""`hil bisect`: find the commit that made a guest hang or crash sometimes, with a confidence figure.

A flaky bug shows in only some runs of a bad commit, so a passing run proves little and bisection must
weigh evidence instead of trusting single runs (the idea of syzkaller's flaky-aware bisection):

- Each run is sorted by its report.json: `match` (the bug: the same signature as at the bad commit),
  `pass`, `other` (a different failure: it hides whether this bug is there, so it counts neither way)
  and `skip` (infra: QEMU or the host failed). A build that fails makes its commit untestable (`git bisect
  skip`), and so do three runs in a row at one commit that tell nothing.
- The bad commit is run until the bug shows (at most 2N runs): that proves it reproduces, fixes the
  signature when none is given, and is the first evidence about p, the chance that a run of a bad commit
  shows the bug. The good commit is run N times: the bug there would make the whole search meaningless.
- The search is Bayesian over (culprit, p): a uniform prior on which commit of good..bad introduced the
  bug and on p (a grid), updated by every run: a match at commit c proves c bad (no false positives), a
  pass at c multiplies the chance that c is bad by (1 - p). Each next run goes to the commit whose outcome
  is expected to tell the most about the culprit (largest expected entropy drop), staying on the commit
  already built unless another is clearly better, since builds cost time. The search stops once one
  commit holds `confidence` (default 0.95) of the probability: that is the confidence printed. The chance
  that a commit is good, P(culprit after it), is printed per commit; with p known it is 1 - (1 - p)^k
  after k passes, and the posterior folds in what is still unknown about p.
- Commits come from the first-parent chain good..bad; a bug brought in by a merge is blamed on the merge.

The git side goes through `git bisect` (start, bad on every match, skip on untestable commits, the final
good/bad that makes git name the culprit, log, and always reset, even on Ctrl-C); every build and run is
also in bisect-log.jsonl, and each run keeps its own report folder.

`hil bisect run-step` is the simple per-commit check for `git bisect run`: N runs (more when a failure
rate says so), exit 1 at the first run showing the bug, 0 when all pass, 125 when nothing could be told.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hil.errors import UsageError
from hil.paths import private_dir, state_dir

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RUNS = 3
DEFAULT_MAX_RUNS = 200
UNTESTABLE_AFTER = 3  # runs in a row at one commit that tell nothing
STAY_SHARE = 0.8  # keep testing the commit already built while it offers this share of the best information
P_GRID = np.linspace(0.05, 1.0, 50)
RUN_TIMEOUT = 3600.0
SKIP_EXIT, BAD_EXIT, GOOD_EXIT = 125, 1, 0


class Outcome(StrEnum):
    MATCH = "match"  # the bug
    PASS = "pass"
    OTHER = "other"  # another failure: says nothing about this bug
    SKIP = "skip"  # infra: says nothing at all

    @property
    def informative(self) -> bool:
        return self in (Outcome.MATCH, Outcome.PASS)


def outcome_of(verdict: str | None, signature: str | None, wanted: str | None) -> Outcome:
    """Sort a run by its verdict and signature against the bug's signature (None: any failure matches)."""
    if verdict == "pass":
        return Outcome.PASS
    if verdict in (None, "infra"):
        return Outcome.SKIP
    if wanted is None or signature == wanted:
        return Outcome.MATCH
    return Outcome.OTHER


@dataclass
class RunRecord:
    commit: str
    index: int
    verdict: str | None
    signature: str | None
    outcome: Outcome
    seconds: float = 0.0
    report_dir: str = ""
    reason: str = ""


# --- the model: where is the culprit, and how often does the bug show? ------------------------------------


class CulpritModel:
    """Posterior over (culprit index, p) for commits[0..n-1] (oldest first; the last is the bad commit)."""

    def __init__(self, count: int, grid: np.ndarray = P_GRID) -> None:
        if count < 1:
            raise ValueError("no commit between good and bad")
        self.count = count
        self.grid = grid
        self.log_post = np.zeros((count, len(grid)))  # uniform prior on both
        self.testable = np.ones(count, dtype=bool)

    def record(self, index: int, outcome: Outcome) -> None:
        if outcome == Outcome.MATCH:
            self.log_post[: index + 1] += np.log(self.grid)
            self.log_post[index + 1 :] = -np.inf
        elif outcome == Outcome.PASS:
            with np.errstate(divide="ignore"):
                self.log_post[: index + 1] += np.log1p(-self.grid)

    def joint(self) -> np.ndarray:
        top = np.max(self.log_post)
        weights = np.exp(self.log_post - top)
        return weights / weights.sum()

    def culprit_probabilities(self) -> np.ndarray:
        return self.joint().sum(axis=1)

    def p_estimate(self) -> float:
        return float((self.joint().sum(axis=0) * self.grid).sum())

    def good_probability(self, index: int) -> float:
        """P(commit `index` is good) = P(the culprit comes after it)."""
        return float(self.culprit_probabilities()[index + 1 :].sum())

    def blocks(self) -> list[list[int]]:
        """Groups no test can split: each testable commit with the untestable ones just before it."""
        groups: list[list[int]] = [[]]
        for index in range(self.count):
            groups[-1].append(index)
            if self.testable[index] or index == self.count - 1:
                groups.append([])
        return [g for g in groups if g]

    def best_block(self) -> tuple[list[int], float]:
        marginal = self.culprit_probabilities()
        return max(((block, float(marginal[block].sum())) for block in self.blocks()), key=lambda item: item[1])

    def information_gains(self) -> np.ndarray:
        """Expected entropy drop (bits) of the posterior for one run at each commit.

        The entropy is that of the joint (culprit, p): a run also pays for what it teaches about p, which
        every later decision leans on."""
        joint = self.joint()
        fail, passed = joint * self.grid, joint * (1 - self.grid)
        rows = _Rows(joint)
        fail_rows, pass_rows = _Rows(fail), _Rows(passed)
        p_fail = np.cumsum(fail_rows.total)
        h_fail = _entropy_of_prefixes(fail_rows)
        h_pass = _entropy_of_mixture(pass_rows, rows)
        gains = rows.entropy() - (p_fail * h_fail + (1 - p_fail) * h_pass)
        gains[~self.testable] = -np.inf
        gains[-1] = -np.inf  # the bad commit tells about p only
        return gains

    def choose(self, current: int | None = None) -> int | None:
        gains = self.information_gains()
        best = int(np.argmax(gains))
        if not np.isfinite(gains[best]):
            return None
        if current is not None and np.isfinite(gains[current]) and gains[current] >= STAY_SHARE * gains[best]:
            return current
        return best


def _xlogx(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, values * np.log2(np.where(values > 0, values, 1)), 0.0)


class _Rows:
    """Per culprit row of a (culprit, p) table: its mass and its sum of x log x, for prefix entropies."""

    def __init__(self, table: np.ndarray) -> None:
        self.total = table.sum(axis=1)
        self.xlogx = _xlogx(table).sum(axis=1)

    def entropy(self) -> float:
        return float(_normalized_entropy(self.total.sum(), self.xlogx.sum()))


def _normalized_entropy(total: np.ndarray | float, xlogx: np.ndarray | float) -> np.ndarray:
    """Entropy of a table scaled to sum 1, from its sum and its sum of x log x: log T - (sum x log x) / T."""
    safe = np.where(np.asarray(total) > 0, total, 1)
    return np.where(np.asarray(total) > 0, np.log2(safe) - np.asarray(xlogx) / safe, 0.0)


def _entropy_of_prefixes(rows: _Rows) -> np.ndarray:
    """Entropy of rows[:j+1] normalized, for every j."""
    return _normalized_entropy(np.cumsum(rows.total), np.cumsum(rows.xlogx))


def _entropy_of_mixture(head: _Rows, tail: _Rows) -> np.ndarray:
    """Entropy of (head rows[:j+1], tail rows[j+1:]) normalized, for every j."""
    totals = np.cumsum(head.total) + (tail.total.sum() - np.cumsum(tail.total))
    weighted = np.cumsum(head.xlogx) + (tail.xlogx.sum() - np.cumsum(tail.xlogx))
    return _normalized_entropy(totals, weighted)


# --- the search, over anything that can build and run commits ------------------------------------------------


class Lab(Protocol):
    """Where commits are built and run: git + hil run for real, a simulation in tests and the benchmark."""

    def build(self, commit: str) -> bool: ...

    def run(self, commit: str, index: int) -> RunRecord: ...

    def mark(self, commit: str, term: str) -> str: ...


@dataclass
class BisectSettings:
    runs: int = DEFAULT_RUNS
    confidence: float = DEFAULT_CONFIDENCE
    max_runs: int = DEFAULT_MAX_RUNS
    signature: str | None = None
    verify_good: bool = True


@dataclass
class CommitEvidence:
    commit: str
    runs: list[RunRecord] = field(default_factory=list)
    build_failed: bool = False
    marked: str = ""

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.runs if r.outcome == outcome)


@dataclass
class BisectResult:
    culprit: list[str]  # one commit, or the commits no test could tell apart
    confidence: float
    p_estimate: float
    signature: str | None
    evidence: dict[str, CommitEvidence]
    good_probability: dict[str, float]
    runs: int
    builds: int
    endpoint_runs: int
    stopped: str  # why the search ended
    git_says: str = ""

    @property
    def found(self) -> bool:
        return self.stopped == "confident"


class BisectError(UsageError):
    """The endpoints do not allow a bisection (the bug does not reproduce, or shows at the good commit)."""


class FlakyBisect:
    """The whole procedure: endpoints, then the Bayesian search, each step logged through `log`."""

    def __init__(
        self,
        lab: Lab,
        good: str,
        commits: Sequence[str],
        settings: BisectSettings,
        log: Callable[[dict[str, Any]], None] = lambda record: None,
    ) -> None:
        self.lab, self.good, self.commits, self.settings, self.log = lab, good, list(commits), settings, log
        self.model = CulpritModel(len(self.commits))
        self.evidence = {c: CommitEvidence(c) for c in [good, *self.commits]}
        self.signature = settings.signature
        self.built: str | None = None
        self.runs = self.builds = self.endpoint_runs = 0

    def run(self) -> BisectResult:
        self._measure_bad()
        if self.settings.verify_good:
            self._verify_good()
        stopped = self._search()
        return self._result(stopped)

    # endpoints

    def _measure_bad(self) -> None:
        bad = self.commits[-1]
        if not self._build(bad):
            raise BisectError(f"the bad commit {bad[:12]} does not build")
        for _ in range(2 * self.settings.runs):
            record = self._run(bad, endpoint=True)
            if self.signature is None and record.outcome == Outcome.MATCH:  # the first failure names the bug
                self.signature = record.signature or f"{record.verdict}:unsigned"
                self.log({"event": "signature", "signature": self.signature, "commit": bad})
            self.model.record(len(self.commits) - 1, record.outcome)
            if record.outcome == Outcome.MATCH:
                self._mark(bad, "bad")
                return
        raise BisectError(
            f"the bug does not reproduce at the bad commit {bad[:12]} in {2 * self.settings.runs} runs "
            f"(signature {self.signature or 'any failure'}); more --runs, or check the command"
        )

    def _verify_good(self) -> None:
        if not self._build(self.good):
            raise BisectError(f"the good commit {self.good[:12]} does not build")
        for _ in range(self.settings.runs):
            if self._run(self.good, endpoint=True).outcome == Outcome.MATCH:
                raise BisectError(f"the good commit {self.good[:12]} shows the bug ({self.signature}): not good")

    # the search

    def _search(self) -> str:
        while True:
            _, probability = self.model.best_block()
            if probability >= self.settings.confidence:
                return "confident"
            if self.runs >= self.settings.max_runs:
                return "run budget spent"
            index = self.model.choose(self._built_index())
            if index is None:
                return "no testable commit left"
            self._test(index)

    def _test(self, index: int) -> None:
        commit = self.commits[index]
        self.log({"event": "choose", "commit": commit, "culprit_p": round(self.model.best_block()[1], 4)})
        if not self._build(commit):
            self._untestable(index, "build failed")
            return
        record = self._run(commit)
        self.model.record(index, record.outcome)
        if record.outcome == Outcome.MATCH:
            self._mark(commit, "bad")
        recent = self.evidence[commit].runs[-UNTESTABLE_AFTER:]
        if len(recent) == UNTESTABLE_AFTER and not any(r.outcome.informative for r in recent):
            self._untestable(index, f"{UNTESTABLE_AFTER} runs in a row told nothing")

    def _untestable(self, index: int, why: str) -> None:
        self.model.testable[index] = False
        self.log({"event": "untestable", "commit": self.commits[index], "why": why})
        self._mark(self.commits[index], "skip")

    def _built_index(self) -> int | None:
        return self.commits.index(self.built) if self.built in self.commits else None

    # lab calls, counted and logged

    def _build(self, commit: str) -> bool:
        if self.built == commit:
            return True
        if self.evidence[commit].build_failed:
            return False
        started = time.monotonic()
        ok = self.lab.build(commit)
        self.builds += 1
        self.built = commit if ok else None
        self.evidence[commit].build_failed = not ok
        self.log({"event": "build", "commit": commit, "ok": ok, "seconds": round(time.monotonic() - started, 3)})
        return ok

    def _run(self, commit: str, endpoint: bool = False) -> RunRecord:
        evidence = self.evidence[commit]
        record = self.lab.run(commit, len(evidence.runs) + 1)
        record.outcome = outcome_of(record.verdict, record.signature, self.signature)
        evidence.runs.append(record)
        if endpoint:
            self.endpoint_runs += 1
        else:
            self.runs += 1
        self.log({"event": "run", **asdict(record), "endpoint": endpoint})
        return record

    def _mark(self, commit: str, term: str) -> str:
        evidence = self.evidence[commit]
        if evidence.marked == term:
            return ""
        evidence.marked = term
        said = self.lab.mark(commit, term)
        self.log({"event": "mark", "commit": commit, "term": term, "git": said.strip()[-500:]})
        return said

    def _result(self, stopped: str) -> BisectResult:
        block, probability = self.model.best_block()
        culprit = [self.commits[i] for i in block]
        git_says = ""
        if stopped == "confident":
            git_says = self._mark(culprit[-1], "bad")
            previous = self.commits[block[0] - 1] if block[0] > 0 else self.good
            git_says = self._mark(previous, "good") or git_says
        goods = {
            c: round(self.model.good_probability(i), 4) for i, c in enumerate(self.commits) if self.evidence[c].runs
        }
        result = BisectResult(
            culprit=culprit,
            confidence=round(probability, 4),
            p_estimate=round(self.model.p_estimate(), 3),
            signature=self.signature,
            evidence=self.evidence,
            good_probability=goods,
            runs=self.runs,
            builds=self.builds,
            endpoint_runs=self.endpoint_runs,
            stopped=stopped,
            git_says=git_says,
        )
        self.log({"event": "result", "culprit": culprit, "confidence": result.confidence, "stopped": stopped,
                  "p": result.p_estimate, "runs": self.runs, "endpoint_runs": self.endpoint_runs})  # fmt: skip
        return result


# --- the real lab: git + a build command + `hil run` -----------------------------------------------------------


class Git:
    def __init__(self, repo: Path) -> None:
        self.repo = Path(repo)

    def __call__(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, text=True, check=False)
        if check and done.returncode != 0:
            raise UsageError(
                f"git {' '.join(args)} failed in {self.repo}: {done.stderr.strip() or done.stdout.strip()}"
            )
        return done.stdout + done.stderr

    def sha(self, rev: str) -> str:
        return self("rev-parse", "--verify", f"{rev}^{{commit}}").strip()

    def subject(self, sha: str) -> str:
        return self("log", "-1", "--format=%s", sha).strip()

    def first_parent_chain(self, good: str, bad: str) -> list[str]:
        if not self._is_ancestor(good, bad):
            raise UsageError(f"--good {good[:12]} is not an ancestor of --bad {bad[:12]}")
        commits = self("rev-list", "--first-parent", "--reverse", f"{good}..{bad}").split()
        if not commits:
            raise UsageError("there is no commit between --good and --bad")
        return commits

    def _is_ancestor(self, good: str, bad: str) -> bool:
        done = subprocess.run(["git", "-C", str(self.repo), "merge-base", "--is-ancestor", good, bad], check=False)
        return done.returncode == 0


class GitLab:
    """Checks commits out (inside a `git bisect` session), builds them, runs `hil run` on them."""

    def __init__(self, git: Git, build_command: str | None, run_command: list[str], log_dir: Path) -> None:
        self.git, self.build_command, self.run_command, self.log_dir = git, build_command, run_command, log_dir

    def build(self, commit: str) -> bool:
        self.git("checkout", "-q", "--detach", commit)
        if not self.build_command:
            return True
        log_path = self.log_dir / "builds" / f"{commit[:12]}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            done = subprocess.run(self.build_command, shell=True, cwd=self.git.repo, stdout=log,
                                  stderr=subprocess.STDOUT, check=False)  # fmt: skip
        return done.returncode == 0

    def run(self, commit: str, index: int) -> RunRecord:
        report_dir = self.log_dir / "runs" / f"{commit[:12]}-{index}"
        started = time.monotonic()
        verdict, signature, reason = run_hil(self.run_command, report_dir)
        return RunRecord(commit, index, verdict, signature, Outcome.SKIP, round(time.monotonic() - started, 3),
                         str(report_dir), reason)  # fmt: skip

    def mark(self, commit: str, term: str) -> str:
        return self.git("bisect", term, commit, check=False)


def run_hil(
    command: Sequence[str], report_dir: Path, timeout: float = RUN_TIMEOUT
) -> tuple[str | None, str | None, str]:
    """One `hil run` into `report_dir`; (verdict, signature, reason) from its report.json (None: no report)."""
    argv, env = hil_argv([*command, "--report-dir", str(report_dir)])
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(report_dir.parent / f"{report_dir.name}.log", "w") as log:
        try:
            subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return None, None, f"hil run took longer than {timeout:.0f} s"
    try:
        report = json.loads((report_dir / "report.json").read_text())
    except (OSError, ValueError) as err:
        return None, None, f"no report.json: {err}"
    return report.get("verdict"), report.get("signature"), str(report.get("reason", ""))


def hil_argv(command: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """`hil ...` runs this very hil (same interpreter, same source tree); anything else runs as given."""
    env = dict(os.environ)
    if not command or command[0] != "hil":
        return list(command), env
    source_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH", "")) if p)
    return [sys.executable, "-m", "hil.cli", *command[1:]], env


def with_timeout_factor(command: list[str], factor: float | None) -> list[str]:
    if factor is None or "--timeout-factor" in command:
        return command
    return [*command, "--timeout-factor", f"{factor:g}"]


def bisect_repo(
    repo: Path,
    good: str,
    bad: str,
    command: list[str],
    settings: BisectSettings,
    *,
    build: str | None = None,
    log_dir: Path | None = None,
    on_event: Callable[[dict[str, Any]], None] = lambda record: None,
) -> tuple[BisectResult, Path]:
    """Bisect `repo` between `good` and `bad` with `hil run` `command`; returns the result and the log folder."""
    git = Git(repo)
    if git("status", "--porcelain", "--untracked-files=no").strip():
        raise UsageError(f"{repo} has uncommitted changes; commit or stash them first (bisect checks commits out)")
    good_sha, bad_sha = git.sha(good), git.sha(bad)
    commits = git.first_parent_chain(good_sha, bad_sha)
    log_dir = private_dir(log_dir or state_dir() / "bisect" / time.strftime("%Y%m%d-%H%M%S"))
    journal = open(log_dir / "bisect-log.jsonl", "a", buffering=1)  # noqa: SIM115

    def log(record: dict[str, Any]) -> None:
        journal.write(json.dumps({"t": round(time.time(), 3), **record}, default=str) + "\n")
        on_event(record)

    log({"event": "start", "repo": str(repo), "good": good_sha, "bad": bad_sha, "commits": len(commits),
         "command": command, "build": build, "settings": asdict(settings)})  # fmt: skip
    git("bisect", "start", "--first-parent", bad_sha, good_sha)
    try:
        lab = GitLab(git, build, command, log_dir)
        result = FlakyBisect(lab, good_sha, commits, settings, log).run()
    finally:
        (log_dir / "git-bisect-log.txt").write_text(git("bisect", "log", check=False))
        git("bisect", "reset", check=False)
        journal.close()
    return result, log_dir


# --- `git bisect run` mode -------------------------------------------------------------------------------------


def runs_for_confidence(failure_rate: float, confidence: float) -> int:
    """Passing runs needed before a commit is good with `confidence`, when a bad one fails with `failure_rate`."""
    if failure_rate >= 1:
        return 1
    return max(1, math.ceil(math.log(1 - confidence) / math.log(1 - failure_rate)))


def run_step(
    command: list[str],
    *,
    runs: int = DEFAULT_RUNS,
    signature: str | None = None,
    failure_rate: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    log_dir: Path | None = None,
    run: Callable[[Path], tuple[str | None, str | None, str]] | None = None,
) -> tuple[int, list[RunRecord]]:
    """Decide one commit for `git bisect run`: (exit code 0 good / 1 bad / 125 skip, the runs behind it)."""
    wanted = runs if failure_rate is None else min(runs_for_confidence(failure_rate, confidence), 4 * runs)
    log_dir = private_dir(log_dir or state_dir() / "bisect-steps" / time.strftime("%Y%m%d-%H%M%S"))
    run = run or (lambda folder: run_hil(command, folder))
    records: list[RunRecord] = []
    for index in range(1, 2 * wanted + 1):  # other failures and infra get a second chance each
        verdict, sig, reason = run(log_dir / f"run-{index}")
        record = RunRecord("HEAD", index, verdict, sig, outcome_of(verdict, sig, signature), reason=reason)
        records.append(record)
        if record.outcome == Outcome.MATCH:
            return BAD_EXIT, records
        if sum(r.outcome == Outcome.PASS for r in records) >= wanted:
            return GOOD_EXIT, records
    return (GOOD_EXIT if any(r.outcome == Outcome.PASS for r in records) else SKIP_EXIT), records


# --- the command line ------------------------------------------------------------------------------------------


def bisect_command(args: Any, terminal: Any) -> int:
    command = _after_dashes(list(args.command))
    if command and command[0] == "run-step":
        return _run_step_command(_run_step_options(args, command[1:]), terminal)
    if not command:
        raise UsageError("give the run after `--`: hil bisect --repo R --good A --bad B -- hil run SCENARIO ...")
    missing = [f"--{name}" for name in ("repo", "good", "bad") if not getattr(args, name)]
    if missing:
        raise UsageError(f"hil bisect needs {', '.join(missing)}")
    settings = BisectSettings(runs=args.runs, confidence=args.confidence, max_runs=args.max_runs,
                              signature=args.signature, verify_good=not args.no_verify_good)  # fmt: skip
    command = with_timeout_factor(command, args.timeout_factor)
    printer = _EventPrinter(terminal)
    result, log_dir = bisect_repo(Path(args.repo), args.good, args.bad, command, settings, build=args.build,
                                  log_dir=args.log_dir, on_event=printer)  # fmt: skip
    print_bisect_result(terminal, result, Git(Path(args.repo)), log_dir)
    return 0 if result.found else 1


def _after_dashes(command: list[str]) -> list[str]:
    return command[1:] if command[:1] == ["--"] else command


def _run_step_options(args: Any, rest: list[str]) -> Any:
    """`run-step` takes its options after its name too: `hil bisect run-step --runs 5 -- hil run ...`."""
    import argparse

    parser = argparse.ArgumentParser(prog="hil bisect run-step", add_help=False)
    for name in ("runs", "signature", "failure_rate", "confidence", "timeout_factor", "log_dir"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=getattr(args, name))
    options, command = parser.parse_known_args(rest)
    options.command = _after_dashes(command)
    for name, kind in (("runs", int), ("failure_rate", float), ("confidence", float), ("timeout_factor", float)):
        value = getattr(options, name)
        setattr(options, name, kind(value) if value is not None else None)
    options.log_dir = Path(options.log_dir) if options.log_dir else None
    return options


def _run_step_command(args: Any, terminal: Any) -> int:
    command = list(args.command)
    if not command:
        raise UsageError("give the run after `--`: hil bisect run-step [--runs N] -- hil run SCENARIO ...")
    command = with_timeout_factor(command, args.timeout_factor)
    code, records = run_step(command, runs=args.runs, signature=args.signature, failure_rate=args.failure_rate,
                             confidence=args.confidence, log_dir=args.log_dir)  # fmt: skip
    for record in records:
        terminal.print(f"  run {record.index}: {record.verdict} {record.signature or ''} -> {record.outcome}")
    terminal.print({GOOD_EXIT: "good", BAD_EXIT: "bad", SKIP_EXIT: "skip"}[code])
    return code


class _EventPrinter:
    def __init__(self, terminal: Any) -> None:
        self.terminal = terminal

    def __call__(self, record: dict[str, Any]) -> None:
        event = record["event"]
        if event == "run":
            where = "endpoint " if record.get("endpoint") else ""
            what = f"{record['verdict']} {record.get('signature') or ''} -> {record['outcome']}"
            self.terminal.print(
                f"  {where}run {record['commit'][:12]} #{record['index']}: {what}  ({record['seconds']:.0f} s)"
            )
        elif event == "build" and not record["ok"]:
            self.terminal.print(f"  build of {record['commit'][:12]} failed: skipped")
        elif event in ("signature", "untestable"):
            self.terminal.print(f"  {event}: {record.get('signature') or record.get('why')}")


def print_bisect_result(terminal: Any, result: BisectResult, git: Git, log_dir: Path) -> None:
    terminal.print(f"signature: {result.signature}   estimated failure rate at bad commits: {result.p_estimate:.2f}")
    terminal.print("commit        match pass other skip  P(good)  verdict")
    for commit, evidence in result.evidence.items():
        if not evidence.runs and not evidence.build_failed:
            continue
        good_p = result.good_probability.get(commit)
        verdict = evidence.marked or ("good?" if good_p is not None and good_p > 0.5 else "")
        counts = [evidence.count(o) for o in (Outcome.MATCH, Outcome.PASS, Outcome.OTHER, Outcome.SKIP)]
        shown = f"{good_p:7.3f}" if good_p is not None else "      -"
        terminal.print(f"{commit[:12]}  {counts[0]:5} {counts[1]:4} {counts[2]:5} {counts[3]:4}  {shown}  {verdict}"
                       f"  {git.subject(commit)[:50]}")  # fmt: skip
    names = ", ".join(f"{c[:12]} {git.subject(c)}" for c in result.culprit)
    label = "culprit" if len(result.culprit) == 1 else "culprit is one of"
    terminal.print(f"{label}: {names}")
    terminal.print(f"confidence {result.confidence:.3f} ({result.stopped}); {result.runs} search runs + "
                   f"{result.endpoint_runs} endpoint runs, {result.builds} builds")  # fmt: skip
    if result.git_says:
        terminal.print(result.git_says.strip().splitlines()[0])
    terminal.print(f"log: {log_dir / 'bisect-log.jsonl'}  git bisect log: {log_dir / 'git-bisect-log.txt'}")
