"""Boots `hil bisect` needs to name the culprit among 64 commits when the bug shows in half the runs.

Simulated, no QEMU: commit i (1..64, after a known good commit 0; commit 64 is the known bad one) is bad
when i >= the culprit, drawn uniformly; a run of a bad commit shows the bug with probability p, a run of a
good commit never does. The bisection itself (hil.bisect.FlakyBisect, the code `hil bisect` runs) does not
know p or the culprit.

The information bound: to name one of M = 64 equally likely culprits with error probability at most
e = 1 - confidence, any procedure must gain at least log2(M) - h(e) - e * log2(M - 1) bits (Fano's
inequality). One run carries at most C bits: its outcome passes through a Z-channel (a good commit always
passes; a bad one fails with probability p), whose capacity is C = log2(1 + (1 - p) * p^(p / (1 - p)))
(0.322 bits at p = 0.5), and choosing each test from earlier outcomes (feedback) cannot raise a channel's
capacity. So the expected number of runs is at least bits / C, even for a procedure that knows p. The
ratio printed is the search's mean runs over that bound; endpoint runs (reproducing at the bad commit,
checking the good one) are shown apart because the bound takes the endpoints as given.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from dataclasses import dataclass

import numpy as np

from hil.bisect import BisectError, BisectSettings, CulpritModel, FlakyBisect, Outcome, RunRecord

TARGET_RATIO = 1.5


@dataclass
class SimulatedLab:
    culprit: int
    failure_rate: float
    rng: random.Random

    def build(self, commit: str) -> bool:
        return True

    def run(self, commit: str, index: int) -> RunRecord:
        bad = int(commit) >= self.culprit
        failed = bad and self.rng.random() < self.failure_rate
        verdict, signature = ("hang", "hang:deadlock/idle:stage:ready") if failed else ("pass", None)
        return RunRecord(commit, index, verdict, signature, Outcome.SKIP)

    def mark(self, commit: str, term: str) -> str:
        return ""


def information_bound(commits: int, failure_rate: float, confidence: float) -> tuple[float, float, float]:
    """(bits needed, bits per run at most, runs at least) as in the module notes."""
    error = 1 - confidence
    entropy = -error * math.log2(error) - (1 - error) * math.log2(1 - error)
    bits = math.log2(commits) - entropy - error * math.log2(commits - 1)
    p = failure_rate
    capacity = math.log2(1 + (1 - p) * p ** (p / (1 - p))) if p < 1 else 1.0
    return bits, capacity, bits / capacity


@dataclass
class Tally:
    search: list[int]
    endpoint: list[int]
    builds: list[int]
    right: int = 0
    unreproduced: int = 0


def simulate(args: argparse.Namespace, known_p: bool) -> Tally:
    """Bisect `args.trials` random culprits; with `known_p` the model is told p (a one-point grid)."""
    rng = random.Random(args.seed)
    settings = BisectSettings(runs=args.runs, confidence=args.confidence)
    commits = [str(i) for i in range(1, args.commits + 1)]
    tally = Tally([], [], [])
    for _ in range(args.trials):
        culprit = rng.randint(1, args.commits)
        bisection = FlakyBisect(SimulatedLab(culprit, args.failure_rate, rng), "0", commits, settings)
        if known_p:
            bisection.model = CulpritModel(len(commits), np.array([args.failure_rate]))
        try:
            result = bisection.run()
        except BisectError:  # the bad commit did not fail in 2 x --runs runs: hil bisect stops and says so
            tally.unreproduced += 1
            continue
        tally.search.append(result.runs)
        tally.endpoint.append(result.endpoint_runs)
        tally.builds.append(result.builds)
        tally.right += result.culprit == [str(culprit)]
    return tally


def report(name: str, tally: Tally, bound: float, confidence: float) -> float:
    search, endpoint = statistics.mean(tally.search), statistics.mean(tally.endpoint)
    right = tally.right / len(tally.search)
    print(f"{name}: search runs mean {search:.1f} (median {statistics.median(tally.search):.0f}, "
          f"max {max(tally.search)}), endpoint runs {endpoint:.1f}, builds {statistics.mean(tally.builds):.1f}, "
          f"culprit right {right:.1%} (asked {confidence:.0%}), unreproduced {tally.unreproduced}")  # fmt: skip
    print(f"  ratio to the bound: search {search / bound:.2f}x, with endpoint runs {(search + endpoint) / bound:.2f}x")
    return search / bound


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=64)
    parser.add_argument("--failure-rate", type=float, default=0.5)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--runs", type=int, default=3, help="hil bisect --runs (endpoint runs)")
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    bits, capacity, bound = information_bound(args.commits, args.failure_rate, args.confidence)
    print(f"{args.commits} commits, failure rate {args.failure_rate}, confidence {args.confidence}, {args.trials}x")
    print(f"information bound: {bits:.3f} bits needed / {capacity:.4f} bits per run = {bound:.1f} runs")
    ratio = report("hil bisect (p unknown, learned)", simulate(args, known_p=False), bound, args.confidence)
    report("same search told p", simulate(args, known_p=True), bound, args.confidence)
    print(f"ratio (hil bisect, search runs): {ratio:.2f}x, target <= {TARGET_RATIO}x")


if __name__ == "__main__":
    main()
