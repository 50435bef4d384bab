"""Runs `hil bisect` needs to name the culprit among 64 commits, against the information bound.

Simulated, no QEMU: commit i (1..64, after a known good commit 0; commit 64 is the known bad one) is bad
when i >= the culprit, drawn uniformly; a run of a bad commit shows the bug with probability p, a run of a
good commit never does. As in real use, UNBUILDABLE random commits do not build, INFRA of all runs are
infra errors, and a second, unrelated bug crashes OTHER_RATE of the runs at OTHER_SPAN commits (another
signature). The bisection itself (hil.bisect.FlakyBisect, the code `hil bisect` runs) knows neither p nor
the culprit.

The bound. A commit that does not build cannot be told from the next one, so the answer is one of the
blocks (a testable commit with the unbuildable ones just before it); with the culprit uniform, naming its
block takes H(B) bits, and naming it with error e at least H(B) - h(e) - e * log2(blocks - 1) (Fano), with
e the error actually reached (the share of trials naming the wrong block). One run carries at most C bits:
a good commit always passes, a bad one fails with probability p, a Z-channel whose "bad" input reads as a
pass with probability q = 1 - p, of capacity C = log2(1 + p * q^(q / p)) (0.322 bits at p = 0.5, 0.177
at p = 0.3); an infra run erases the outcome, leaving (1 - INFRA) * C. Feedback (choosing each test from
earlier outcomes) cannot raise a channel's capacity, so the expected number of search runs is at least
bits / C, even for a procedure that knows p. The first ratio is the search runs over that bound; the
second adds the endpoint runs (reproducing at the bad commit, checking the good one), which the bound
takes as given.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from dataclasses import dataclass, field

import numpy as np
from target import print_target  # bench/target.py (scripts run from bench/ on sys.path)

from hil.bisect import BisectError, BisectSettings, CulpritModel, FlakyBisect, Outcome, RunRecord

TARGET_RATIO = 1.5
TARGET_RIGHT = 0.95
UNBUILDABLE = 2
INFRA = 0.05
OTHER_RATE, OTHER_SPAN = 0.3, 4
SIGNATURE, OTHER_SIGNATURE = "hang:deadlock/idle:stage:ready", "crash:Oops:other_driver"


@dataclass
class SimulatedLab:
    culprit: int
    failure_rate: float
    rng: random.Random
    broken: set[int] = field(default_factory=set)
    other: set[int] = field(default_factory=set)  # where the unrelated bug shows

    def build(self, commit: str) -> bool:
        return int(commit) not in self.broken

    def restore(self, commit: str) -> bool:
        return True

    def run(self, commit: str, index: int) -> RunRecord:
        number, roll = int(commit), self.rng.random()
        if roll < INFRA:
            return RunRecord(commit, index, "infra", None, Outcome.SKIP)
        if number in self.other and self.rng.random() < OTHER_RATE:
            return RunRecord(commit, index, "crash", OTHER_SIGNATURE, Outcome.SKIP)
        failed = number >= self.culprit and self.rng.random() < self.failure_rate
        return RunRecord(commit, index, "hang" if failed else "pass", SIGNATURE if failed else None, Outcome.SKIP)

    def mark(self, commit: str, term: str) -> str:
        return ""


def z_capacity(p: float) -> float:
    """Bits per run at most: the Z-channel where a bad commit shows the bug with p, a good one never."""
    if p >= 1:
        return 1.0
    q = 1 - p
    return math.log2(1 + p * q ** (q / p))


def binary_entropy(e: float) -> float:
    return 0.0 if e <= 0 or e >= 1 else -e * math.log2(e) - (1 - e) * math.log2(1 - e)


def block_sizes(commits: int, broken: set[int]) -> list[int]:
    """Sizes of the groups no test can split (hil.bisect.CulpritModel.blocks) for these broken commits."""
    sizes, current = [], 0
    for number in range(1, commits + 1):
        current += 1
        if number not in broken or number == commits:
            sizes.append(current)
            current = 0
    return sizes


def bits_needed(sizes: list[int], error: float) -> float:
    total = sum(sizes)
    entropy = -sum(s / total * math.log2(s / total) for s in sizes)
    return max(0.0, entropy - binary_entropy(error) - error * math.log2(max(1, len(sizes) - 1)))


@dataclass
class Trial:
    sizes: list[int]
    search: int
    endpoint: int
    builds: int
    distinct: int
    right: bool


def one_trial(args: argparse.Namespace, p: float, rng: random.Random, known_p: bool) -> Trial | None:
    culprit = rng.randint(1, args.commits)
    broken = set(rng.sample(range(1, args.commits), UNBUILDABLE))
    start = rng.randint(1, args.commits - OTHER_SPAN - 4)
    lab = SimulatedLab(culprit, p, rng, broken, set(range(start, start + OTHER_SPAN)))
    commits = [str(i) for i in range(1, args.commits + 1)]
    settings = BisectSettings(runs=args.runs or endpoint_runs(p), confidence=args.confidence)
    bisection = FlakyBisect(lab, "0", commits, settings)
    if known_p:
        bisection.model = CulpritModel(len(commits), np.array([p]))
    try:
        result = bisection.run()
    except BisectError:  # the bad commit did not fail in 2 x --runs runs: hil bisect stops and says so
        return None
    distinct = sum(1 for e in result.evidence.values() if e.runs or e.build_failed)
    return Trial(block_sizes(args.commits, broken), result.runs, result.endpoint_runs, result.builds, distinct,
                 str(culprit) in result.culprit)  # fmt: skip


def endpoint_runs(p: float) -> int:
    """--runs that reproduce the bug at the bad commit (2x this many runs) in 99 % of trials."""
    return max(2, math.ceil(math.log(0.01) / math.log(1 - p) / 2)) if p < 1 else 1


def simulate(args: argparse.Namespace, p: float, known_p: bool) -> tuple[list[Trial], int]:
    rng = random.Random(args.seed)
    trials, unreproduced = [], 0
    for _ in range(args.trials):
        trial = one_trial(args, p, rng, known_p)
        if trial is None:
            unreproduced += 1
        else:
            trials.append(trial)
    return trials, unreproduced


def report(name: str, p: float, trials: list[Trial], unreproduced: int) -> tuple[float, float, float]:
    right = sum(t.right for t in trials) / len(trials)
    capacity = (1 - INFRA) * z_capacity(p)
    bound = statistics.mean(bits_needed(t.sizes, 1 - right) for t in trials) / capacity
    search = statistics.mean(t.search for t in trials)
    endpoint = statistics.mean(t.endpoint for t in trials)
    builds, distinct = statistics.mean(t.builds for t in trials), statistics.mean(t.distinct for t in trials)
    print(f"  {name}: search runs mean {search:.1f} (median {statistics.median(t.search for t in trials):.0f}, "
          f"max {max(t.search for t in trials)}), endpoint runs {endpoint:.1f}; culprit right {right:.1%}; "
          f"builds {builds:.1f} for {distinct:.1f} distinct commits; unreproduced {unreproduced}")  # fmt: skip
    print(f"    bound at that accuracy {bound:.1f} runs; ratio: search {search / bound:.2f}x, "
          f"with endpoint runs {(search + endpoint) / bound:.2f}x")  # fmt: skip
    return search / bound, (search + endpoint) / bound, right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=64)
    parser.add_argument("--failure-rate", type=float, action="append", help="p (repeatable; default 0.5 and 0.3)")
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--runs", type=int, help="hil bisect --runs (default: enough to reproduce in 98 %%)")
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"{args.commits} commits ({UNBUILDABLE} unbuildable), {INFRA:.0%} infra runs, a second bug in "
          f"{OTHER_RATE:.0%} of runs at {OTHER_SPAN} commits; confidence {args.confidence}, "
          f"{args.trials} trials")  # fmt: skip
    verdicts = []
    for p in args.failure_rate or [0.5, 0.3]:
        runs = args.runs or endpoint_runs(p)
        print(f"p = {p}: {z_capacity(p):.4f} bits per run at most, --runs {runs} at the endpoints")
        ratio, with_endpoints, right = report("hil bisect (p learned)", p, *simulate(args, p, known_p=False))
        report("same search told p", p, *simulate(args, p, known_p=True))
        ok = ratio <= TARGET_RATIO and right >= TARGET_RIGHT
        verdicts.append(f"p={p}: {ratio:.2f}x ({with_endpoints:.2f}x with endpoints), right {right:.1%}"
                        f" {'ok' if ok else 'MISSED'}")  # fmt: skip
    print_target("bisect_efficiency", "; ".join(verdicts),
                 f"<= {TARGET_RATIO}x in search runs with the culprit right >= {TARGET_RIGHT:.0%}",
                 all(verdict.endswith(" ok") for verdict in verdicts))  # fmt: skip


if __name__ == "__main__":
    main()
