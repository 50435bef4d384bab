"""`hil bisect`: find the commit that made a guest hang or crash sometimes, with a confidence figure.

A flaky bug shows in only some runs of a bad commit, so a passing run proves little and bisection must
weigh evidence instead of trusting single runs (the idea of syzkaller's flaky-aware bisection):

- Each run is sorted by its report.json: `match` (the bug: the same signature as at the bad commit),
  `pass`, `other` (a different failure: it hides whether this bug is there, so it counts neither way)
  and `skip` (infra: QEMU or the host failed). A build that fails makes its commit untestable (`git bisect
  skip`), and so do three runs in a row at one commit that tell nothing.
- The bad commit is run N times, and on until the bug showed twice (at most 2N runs; once is enough at
  the end): that proves it reproduces, fixes the signature when none is given, and is the first evidence
  about p, the chance that a run of a bad commit shows the bug. The good commit is run N times: the bug
  there would make the whole search meaningless.
- The search is Bayesian over (culprit, p): a uniform prior on which commit of good..bad introduced the
  bug and on p (a grid), updated by every run: a match at commit c proves c bad (no false positives), a
  pass at c multiplies the chance that c is bad by (1 - p). Each next run goes to the commit whose outcome
  is expected to tell the most about the culprit (largest expected entropy drop), preferring a commit
  already built unless another is clearly better, since builds cost time. The search stops once one
  commit holds `confidence` (default 0.95) of the probability: that is the confidence printed. The chance
  that a commit is good, P(culprit after it), is printed per commit; with p known it is 1 - (1 - p)^k
  after k passes, and the posterior folds in what is still unknown about p.
- Commits come from the first-parent chain good..bad; a bug brought in by a merge is blamed on the merge.

The git side goes through `git bisect` (start, bad on every match, skip on untestable commits, the final
good/bad that makes git name the culprit, log, and always reset, even on Ctrl-C); every build and run is
also in bisect-log.jsonl, and each run keeps its own report folder.

Builds are kept per commit (GitLab: the --artifact files, by content key), so the search never builds a
commit twice; with --jobs several runs of the commit under test go at once, as many as the cores hold.
The failure rate printed is counted from the runs at the culprit and after it, with its interval: no
prior enters it. `hil bisect run-step` (hil/bisect_step.py) is the per-commit check for `git bisect run`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rich import box
from rich.table import Table
from rich.text import Text

from hil.errors import UsageError
from hil.paths import private_dir, state_dir
from hil.reports.terminal import listing, one_line

DEFAULT_CONFIDENCE = 0.95
DEFAULT_RUNS = 3
DEFAULT_MAX_RUNS = 200
MATCHES_AT_BAD = 2  # failures the bad commit must show (within 2 x --runs) before the search
UNTESTABLE_AFTER = 3  # runs in a row at one commit that tell nothing
STAY_SHARE = 0.95  # test a commit already built while it offers this share of the best information
P_GRID = np.linspace(0.05, 1.0, 50)
# The prior on the failure rate leans to low rates, density (1 - p)^P_PRIOR_TILT (p = 1 weighs as 0.999):
# then a pass at a bad commit is weaker evidence of a good one. With the flat prior the search was
# overconfident at low rates (95.0 % right at p = 0.3 for 95 % asked, 6000 simulated bisections); with
# this tilt 95.8 %, at 2-3 % more runs at p = 0.3 and 0.5 and one more run at p = 0.9.
P_PRIOR_TILT = 0.25
RUN_TIMEOUT = 3600.0
RATE_LEVEL = 0.9  # the failure-rate interval printed
ASSUMED_SMP = 2  # a VM's vCPUs when the command gives no --smp (the reference guest's default)
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


def rate_interval(matches: int, passes: int, level: float = RATE_LEVEL) -> tuple[float, float]:
    """A `level` interval of the failure rate after `matches` of `matches + passes` runs (Beta(m+1, n+1))."""
    grid = np.linspace(0.0, 1.0, 2001)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_density = np.where(grid > 0, matches * np.log(grid), 0.0 if matches == 0 else -np.inf)
        log_density = log_density + np.where(grid < 1, passes * np.log1p(-grid), 0.0 if passes == 0 else -np.inf)
    cdf = np.cumsum(np.exp(log_density - log_density.max()))
    cdf /= cdf[-1]
    # One-sided when every run went one way: the estimate (0 or 1) must lie inside its own interval.
    low_tail = 0.0 if matches == 0 else (1 - level) if passes == 0 else (1 - level) / 2
    high_tail = 1.0 if passes == 0 else level if matches == 0 else 1 - (1 - level) / 2
    low, high = np.searchsorted(cdf, low_tail), min(int(np.searchsorted(cdf, high_tail)), len(grid) - 1)
    return float(grid[low]) if matches else 0.0, float(grid[high]) if passes else 1.0


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
        # Uniform on the culprit; on p, the tilt toward low rates.
        prior_p = P_PRIOR_TILT * np.log1p(-np.minimum(grid, 0.999))
        self.log_post = np.tile(prior_p - prior_p.max(), (count, 1))
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
        """Expected entropy drop (bits) of the culprit's posterior for one run at each commit.

        Only the culprit's entropy counts: what a run teaches about p comes for free and paying for it
        (the joint's entropy) cost about 5 % more runs in bench/bisect_efficiency.py."""
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

    def choose(self, built: Sequence[int] = ()) -> int | None:
        """The most informative commit, or one already built (no new build) that offers STAY_SHARE of it."""
        gains = self.information_gains()
        best = int(np.argmax(gains))
        if not np.isfinite(gains[best]):
            return None
        near = max(built, key=lambda index: gains[index], default=None)
        if near is not None and np.isfinite(gains[near]) and gains[near] >= STAY_SHARE * gains[best]:
            return near
        return best


def _xlogx(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, values * np.log2(np.where(values > 0, values, 1)), 0.0)


class _Rows:
    """Per culprit row of a (culprit, p) table: its mass and its x log x, for the culprit's prefix entropies."""

    def __init__(self, table: np.ndarray) -> None:
        self.total = table.sum(axis=1)
        self.xlogx = _xlogx(self.total)

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
    """Where commits are built and run: git + hil run for real, a simulation in tests and the benchmark.
    `run` may be called from several threads at once (--jobs); `restore` puts back an earlier build of
    `commit` and says False when it cannot (then the commit is built again)."""

    def build(self, commit: str) -> bool: ...

    def restore(self, commit: str) -> bool: ...

    def run(self, commit: str, index: int) -> RunRecord: ...

    def mark(self, commit: str, term: str) -> str: ...


@dataclass
class BisectSettings:
    runs: int = DEFAULT_RUNS
    confidence: float = DEFAULT_CONFIDENCE
    max_runs: int = DEFAULT_MAX_RUNS
    signature: str | None = None
    verify_good: bool = True
    jobs: int = 1  # runs of one commit at once


@dataclass
class CommitEvidence:
    commit: str
    runs: list[RunRecord] = field(default_factory=list)
    build_failed: bool = False
    built: bool = False
    marked: str = ""

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.runs if r.outcome == outcome)


@dataclass
class BisectResult:
    culprit: list[str]  # one commit, or the commits no test could tell apart
    confidence: float
    rate: FailureRate
    signature: str | None
    evidence: dict[str, CommitEvidence]
    good_probability: dict[str, float]
    runs: int
    builds: int
    restores: int
    endpoint_runs: int
    stopped: str  # why the search ended
    asked: float = DEFAULT_CONFIDENCE
    git_says: str = ""

    @property
    def found(self) -> bool:
        return self.stopped == "confident"


@dataclass
class FailureRate:
    """How often a run of a bad commit showed the bug: counted at the commits from the culprit on, no prior."""

    matches: int
    passes: int

    @property
    def runs(self) -> int:
        return self.matches + self.passes

    @property
    def estimate(self) -> float | None:
        return self.matches / self.runs if self.runs else None

    def interval(self) -> tuple[float, float]:
        return rate_interval(self.matches, self.passes)

    def describe(self) -> str:
        if not self.runs:
            return "unknown (no run of a bad commit)"
        low, high = self.interval()
        return (f"{self.estimate:.2f} ({self.matches} of {self.runs} runs; "
                f"{RATE_LEVEL:.0%} interval {low:.2f}-{high:.2f})")  # fmt: skip


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
        self.runs = self.builds = self.restores = self.endpoint_runs = 0

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
        while self.endpoint_runs < 2 * self.settings.runs and not self._bad_measured():
            batch = self._runs(bad, min(self.settings.jobs, 2 * self.settings.runs - self.endpoint_runs), True)
            for record in batch:
                self.model.record(len(self.commits) - 1, record.outcome)
        if self.evidence[bad].count(Outcome.MATCH):
            self._mark(bad, "bad")
            return
        raise BisectError(
            f"the bug does not reproduce at the bad commit {bad[:12]} in {2 * self.settings.runs} runs "
            f"(signature {self.signature or 'any failure'}); more --runs, or check the command"
        )

    def _bad_measured(self) -> bool:
        # At least --runs runs and two failures (within 2 x --runs): the first measure of p. A p guessed
        # from one failure made the search overconfident when p is low (92 % right at p = 0.3).
        runs = self.evidence[self.commits[-1]]
        return len(runs.runs) >= self.settings.runs and runs.count(Outcome.MATCH) >= MATCHES_AT_BAD

    def _verify_good(self) -> None:
        if not self._build(self.good):
            raise BisectError(f"the good commit {self.good[:12]} does not build")
        done = 0
        while done < self.settings.runs:
            batch = self._runs(self.good, min(self.settings.jobs, self.settings.runs - done), endpoint=True)
            done += len(batch)
            if any(record.outcome == Outcome.MATCH for record in batch):
                raise BisectError(f"the good commit {self.good[:12]} shows the bug ({self.signature}): not good")

    # the search

    def _search(self) -> str:
        while True:
            _, probability = self.model.best_block()
            if probability >= self.settings.confidence:
                return "confident"
            if self.runs >= self.settings.max_runs:
                return "run budget spent"
            index = self.model.choose(self._built_indices())
            if index is None:
                return "no testable commit left"
            self._test(index)

    def _test(self, index: int) -> None:
        commit = self.commits[index]
        self.log({"event": "choose", "commit": commit, "culprit_p": round(self.model.best_block()[1], 4)})
        if not self._build(commit):
            self._untestable(index, "build failed")
            return
        for record in self._runs(commit, min(self.settings.jobs, self.settings.max_runs - self.runs)):
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

    def _built_indices(self) -> list[int]:
        return [i for i, c in enumerate(self.commits) if self.evidence[c].built]

    # lab calls, counted and logged

    def _build(self, commit: str) -> bool:
        evidence = self.evidence[commit]
        if self.built == commit:
            return True
        if evidence.build_failed:
            return False
        if evidence.built and self.lab.restore(commit):  # the search came back: no second build
            self.restores += 1
            self.built = commit
            self.log({"event": "restore", "commit": commit})
            return True
        started = time.monotonic()
        ok = self.lab.build(commit)
        self.builds += 1
        self.built = commit if ok else None
        evidence.build_failed, evidence.built = not ok, ok
        self.log({"event": "build", "commit": commit, "ok": ok, "seconds": round(time.monotonic() - started, 3)})
        return ok

    def _runs(self, commit: str, count: int, endpoint: bool = False) -> list[RunRecord]:
        """`count` runs of the built commit, at once when more than one; each sorted, counted and logged."""
        first = len(self.evidence[commit].runs) + 1
        if count == 1:
            records = [self.lab.run(commit, first)]
        else:
            with ThreadPoolExecutor(max_workers=count, thread_name_prefix="hil-bisect") as pool:
                records = list(pool.map(lambda index: self.lab.run(commit, index), range(first, first + count)))
        for record in records:
            self._sort(record, endpoint)
        return records

    def _sort(self, record: RunRecord, endpoint: bool) -> None:
        record.outcome = outcome_of(record.verdict, record.signature, self.signature)
        if self.signature is None and record.outcome == Outcome.MATCH:  # the first failure names the bug
            self.signature = record.signature or f"{record.verdict}:unsigned"
            self.log({"event": "signature", "signature": self.signature, "commit": record.commit})
        self.evidence[record.commit].runs.append(record)
        if endpoint:
            self.endpoint_runs += 1
        else:
            self.runs += 1
        self.log({"event": "run", **asdict(record), "endpoint": endpoint})

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
            rate=self._failure_rate(block[-1]),
            signature=self.signature,
            evidence=self.evidence,
            good_probability=goods,
            runs=self.runs,
            builds=self.builds,
            restores=self.restores,
            endpoint_runs=self.endpoint_runs,
            stopped=stopped,
            asked=self.settings.confidence,
            git_says=git_says,
        )
        self.log({"event": "result", "culprit": culprit, "confidence": result.confidence, "stopped": stopped,
                  "p": result.rate.estimate, "p_matches": result.rate.matches, "p_passes": result.rate.passes,
                  "runs": self.runs, "endpoint_runs": self.endpoint_runs, "builds": self.builds,
                  "restores": self.restores})  # fmt: skip
        return result

    def _failure_rate(self, first_bad: int) -> FailureRate:
        """Counted where the bug is taken to be: the culprit and every commit after it, the bad one too."""
        runs = [r for c in self.commits[first_bad:] for r in self.evidence[c].runs]
        return FailureRate(sum(r.outcome == Outcome.MATCH for r in runs), sum(r.outcome == Outcome.PASS for r in runs))


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
    """Checks commits out (inside a `git bisect` session), builds them, runs `hil run` on them.

    A build's `artifacts` (the files the build writes and the runs read) are kept per content key (the
    commit's tree and the build command), so a commit the search returns to is restored, not rebuilt."""

    def __init__(
        self, git: Git, build_command: str | None, run_command: list[str], log_dir: Path,
        artifacts: Sequence[Path] = (),
    ) -> None:  # fmt: skip
        self.git, self.build_command, self.run_command, self.log_dir = git, build_command, run_command, log_dir
        self.artifacts = [Path(a) if Path(a).is_absolute() else git.repo / a for a in artifacts]

    def build(self, commit: str) -> bool:
        self.git("checkout", "-q", "--detach", commit)
        if not self.build_command:
            return True
        if self._restore_cached(commit):  # the same tree was built already (a revert, a re-run)
            return True
        log_path = self.log_dir / "builds" / f"{commit[:12]}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log:
            done = subprocess.run(self.build_command, shell=True, cwd=self.git.repo, stdout=log,
                                  stderr=subprocess.STDOUT, check=False)  # fmt: skip
        if done.returncode == 0 and self.artifacts:
            self._keep(commit)
        return done.returncode == 0

    def restore(self, commit: str) -> bool:
        self.git("checkout", "-q", "--detach", commit)
        return not self.build_command or self._restore_cached(commit)

    def content_key(self, commit: str) -> str:
        tree = self.git("rev-parse", f"{commit}^{{tree}}").strip()
        text = "\0".join([tree, self.build_command or "", *map(str, self.artifacts)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _cache(self, commit: str) -> Path:
        return self.log_dir / "build-cache" / self.content_key(commit)

    def _keep(self, commit: str) -> None:
        cache = self._cache(commit)
        shutil.rmtree(cache, ignore_errors=True)
        for number, artifact in enumerate(self.artifacts):
            _copy(artifact, cache / str(number))
        (cache / "complete").touch()

    def _restore_cached(self, commit: str) -> bool:
        cache = self._cache(commit)
        if not self.artifacts or not (cache / "complete").exists():
            return False
        for number, artifact in enumerate(self.artifacts):
            _copy(cache / str(number), artifact)
        return True

    def run(self, commit: str, index: int) -> RunRecord:
        report_dir = self.log_dir / "runs" / f"{commit[:12]}-{index}"
        started = time.monotonic()
        verdict, signature, reason = run_hil(self.run_command, report_dir)
        return RunRecord(commit, index, verdict, signature, Outcome.SKIP, round(time.monotonic() - started, 3),
                         str(report_dir), reason)  # fmt: skip

    def mark(self, commit: str, term: str) -> str:
        return self.git("bisect", term, commit, check=False)


def _copy(source: Path, target: Path) -> None:
    """Replace `target` by a copy of `source`, a file or a folder (a missing source leaves no target)."""
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    elif source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


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
    artifacts: Sequence[Path] = (),
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
        lab = GitLab(git, build, command, log_dir, artifacts)
        result = FlakyBisect(lab, good_sha, commits, settings, log).run()
    finally:
        (log_dir / "git-bisect-log.txt").write_text(git("bisect", "log", check=False))
        git("bisect", "reset", check=False)
        journal.close()
    return result, log_dir


# --- the command line ------------------------------------------------------------------------------------------


def parallel_runs(jobs: int, command: Sequence[str], cores: int | None = None) -> tuple[int, int]:
    """(runs at once, vCPUs per VM): at most `jobs`, and no more VMs than the cores hold (TCG needs a host
    thread per vCPU, and an overloaded host stretches boots into false hangs)."""
    smp = _smp_of(command)
    cores = cores or os.cpu_count() or 1
    return max(1, min(jobs, cores // smp)), smp


def _smp_of(command: Sequence[str]) -> int:
    values = [b for a, b in itertools.pairwise(command) if a == "--smp"]
    values += [a.removeprefix("--smp=") for a in command if a.startswith("--smp=")]
    if not values:
        return ASSUMED_SMP
    try:
        return max(int(part) for part in values[-1].split(","))
    except ValueError:
        raise UsageError(f"--smp {values[-1]!r} in the run command: give a number or a list like 1,2") from None


def bisect_command(args: Any, terminal: Any) -> int:
    command = _after_dashes(list(args.command))
    if not command:
        raise UsageError("give the run after `--`: hil bisect --repo R --good A --bad B -- hil run SCENARIO ...")
    missing = [f"--{name}" for name in ("repo", "good", "bad") if not getattr(args, name)]
    if missing:
        raise UsageError(f"hil bisect needs {', '.join(missing)}")
    jobs, smp = parallel_runs(args.jobs, command)
    if args.jobs > 1:
        terminal.print(f"{jobs} run(s) at once: --jobs {args.jobs}, {os.cpu_count()} cores, smp {smp} per VM")
    settings = BisectSettings(runs=args.runs, confidence=args.confidence, max_runs=args.max_runs,
                              signature=args.signature, verify_good=not args.no_verify_good, jobs=jobs)  # fmt: skip
    command = with_timeout_factor(command, args.timeout_factor)
    printer = _EventPrinter(terminal)
    result, log_dir = bisect_repo(Path(args.repo), args.good, args.bad, command, settings, build=args.build,
                                  artifacts=args.artifact, log_dir=args.log_dir, on_event=printer)  # fmt: skip
    print_bisect_result(terminal, result, Git(Path(args.repo)), log_dir)
    return 0 if result.found else 1


def _after_dashes(command: list[str]) -> list[str]:
    return command[1:] if command[:1] == ["--"] else command


class _EventPrinter:
    """One line per event; at 80 columns a long signature wraps under itself, never splitting the time."""

    def __init__(self, terminal: Any) -> None:
        self.terminal = terminal

    def __call__(self, record: dict[str, Any]) -> None:
        event = record["event"]
        if event == "run":
            where = "endpoint run" if record.get("endpoint") else "run"
            what = f"{record['verdict']} -> {record['outcome']}"
            if record.get("signature"):
                what += f"  {record['signature']}"
            self._row(f"{where} {record['commit'][:12]} #{record['index']}", f"{record['seconds']:.0f} s", what)
        elif event == "build" and not record["ok"]:
            self._row(f"build {record['commit'][:12]}", "failed: skipped")
        elif event == "restore":
            self._row(f"back at {record['commit'][:12]}", "its build restored, not rebuilt")
        elif event in ("signature", "untestable"):
            self._row(f"{event}:", str(record.get("signature") or record.get("why")))

    def _row(self, *cells: str) -> None:
        self.terminal.print(listing([[Text(cell) for cell in cells]], gap=1))


def print_bisect_result(terminal: Any, result: BisectResult, git: Git, log_dir: Path) -> None:
    found = [("signature:", Text(result.signature or "-")), ("failure rate:", Text(result.rate.describe()))]
    terminal.print(listing(found, indent=0, gap=1))
    terminal.print(evidence_table(result, git))
    names = ", ".join(f"{c[:12]} {git.subject(c)}" for c in result.culprit)
    sure = f"confidence {result.confidence:.3f}"
    if not result.found:
        sure += f", short of the {result.asked:.2f} asked ({result.stopped}): more --max-runs, or test by hand"
    runs = (f"{result.runs} search runs + {result.endpoint_runs} endpoint runs; {result.builds} builds, "
            f"{result.restores} restored builds")  # fmt: skip
    rows = [(f"{_culprit_label(result)}:", Text(names)), ("", Text(sure)), ("", Text(runs))]
    if result.git_says:
        rows.append(("git bisect:", Text(result.git_says.strip().splitlines()[0])))
    terminal.print(listing(rows, indent=0, gap=1))
    # Paths whole, never wrapped, so they can be copied.
    terminal.print(f"log: {log_dir / 'bisect-log.jsonl'}", soft_wrap=True)
    terminal.print(f"git bisect log: {log_dir / 'git-bisect-log.txt'}", soft_wrap=True)


def evidence_table(result: BisectResult, git: Git) -> Table:
    """Every commit that was run or failed to build: one line each, the subject cut to what fits."""
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False, collapse_padding=True)
    # Only the subject may shrink (rich narrows wrappable columns first); its cells are cut, not wrapped.
    table.add_column("commit", no_wrap=True)
    for name in ("match", "pass", "other", "skip", "P(good)"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("subject")
    for commit, evidence in result.evidence.items():
        if evidence.runs or evidence.build_failed:
            table.add_row(*_evidence_cells(commit, evidence, result.good_probability.get(commit), git))
    return table


def _evidence_cells(commit: str, evidence: CommitEvidence, good_p: float | None, git: Git) -> list[Text]:
    verdict = evidence.marked or ("good?" if good_p is not None and good_p > 0.5 else "")
    counts = [str(evidence.count(o)) for o in (Outcome.MATCH, Outcome.PASS, Outcome.OTHER, Outcome.SKIP)]
    shown = f"{good_p:.3f}" if good_p is not None else "-"
    return [*(Text(cell) for cell in (commit[:12], *counts, shown, verdict)), one_line(git.subject(commit))]


def _culprit_label(result: BisectResult) -> str:
    several = len(result.culprit) > 1
    if result.found:
        return "culprit is one of" if several else "culprit"
    return "most likely culprit is one of" if several else "most likely culprit"
