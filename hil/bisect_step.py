"""`hil bisect run-step`: one commit's answer for `git bisect run`, never a `good` its runs cannot back.

A flaky bug lets some runs of a bad commit pass, so k passes make a commit good only when a bad one would
almost surely have failed one of them. The chance that a bad commit passes k runs is E[(1 - p)^k] over
what is known of p, the failure rate: the --failure-rate given; else what earlier steps of the same `git
bisect` session saw at the commits where the bug showed; else nothing (p uniform, which needs many runs).
The step runs until that chance is at most 1 - confidence (good, 0), the bug shows (bad, 1), or the runs
tell nothing: UNTESTABLE_AFTER in a row that are infra or another failure, too few passes within twice the
runs wanted, or more passes needed than MAX_PASSES (skip, 125: git then tries a neighbour).

What a session learned is kept in the log folder's session.json: the bug's signature (set by the first
failure when --signature is not given, so later steps count other failures as "other") and each step's
counts. A session is told apart by git's own bisect state (BISECT_START, the `git bisect start` line) and
the command, so a new `git bisect start` starts afresh.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hil.argtypes import Parser, positive_float, positive_int, probability
from hil.bisect import (
    BAD_EXIT,
    DEFAULT_CONFIDENCE,
    DEFAULT_RUNS,
    GOOD_EXIT,
    P_GRID,
    SKIP_EXIT,
    UNTESTABLE_AFTER,
    Outcome,
    RunRecord,
    outcome_of,
    run_hil,
    with_timeout_factor,
)
from hil.errors import UsageError
from hil.paths import private_dir, state_dir

MAX_PASSES = 40  # beyond this a step says "can't tell" rather than boot on
SESSION_FILE = "session.json"
HINT = "flaky bug? `hil bisect` weighs all runs at once; --failure-rate R sizes a step"


# --- what is known about the failure rate ----------------------------------------------------------------------


@dataclass
class RateBelief:
    """p as a distribution on a grid: one point when given, else a posterior from a session's runs."""

    grid: np.ndarray
    weights: np.ndarray
    source: str

    @classmethod
    def given(cls, rate: float) -> RateBelief:
        return cls(np.array([rate]), np.array([1.0]), f"{rate:g}, given")

    @classmethod
    def learned(cls, matches: int, passes: int) -> RateBelief:
        with np.errstate(divide="ignore"):  # p = 1 after a pass: log 0, weight 0
            log_w = matches * np.log(P_GRID) + (passes * np.log1p(-P_GRID) if passes else 0.0)
        weights = np.exp(log_w - log_w.max())
        if not matches + passes:
            return cls(P_GRID, weights / weights.sum(), "unknown: no earlier step saw the bug")
        share = matches / (matches + passes)
        return cls(P_GRID, weights / weights.sum(), f"~{share:.2f}, {matches} of {matches + passes} earlier runs")

    def miss(self, passes: int) -> float:
        """The chance that a bad commit passes `passes` runs in a row."""
        return float((self.weights * (1 - self.grid) ** passes).sum())

    def passes_needed(self, confidence: float) -> int | None:
        return next((k for k in range(1, MAX_PASSES + 1) if self.miss(k) <= 1 - confidence), None)


# --- the session: what earlier steps of one `git bisect` learned ------------------------------------------------


@dataclass
class StepSession:
    folder: Path
    key: str | None
    signature: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def open(cls, folder: Path, key: str | None) -> StepSession:
        try:
            data = json.loads((folder / SESSION_FILE).read_text())
        except (OSError, ValueError):
            data = {}
        if key is None or data.get("key") != key:
            return cls(folder, key)
        return cls(folder, key, data.get("signature"), list(data.get("steps", [])))

    def save(self) -> None:
        data = {"key": self.key, "signature": self.signature, "steps": self.steps}
        (self.folder / SESSION_FILE).write_text(json.dumps(data, indent=1))

    def learned(self) -> tuple[int, int]:
        """(matches, passes) at the commits that showed the bug: the only runs known to be of bad commits."""
        bad = [step for step in self.steps if step["match"]]
        return sum(step["match"] for step in bad), sum(step["pass"] for step in bad)


def _git(*args: str) -> str | None:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def session_key(command: Sequence[str]) -> str | None:
    """Names the `git bisect` session run in the current folder (None outside one)."""
    start, log = _git("rev-parse", "--git-path", "BISECT_START"), _git("rev-parse", "--git-path", "BISECT_LOG")
    if not start or not log or not Path(start).exists():
        return None
    lines = Path(log).read_text().splitlines() if Path(log).exists() else []
    started = next((line for line in lines if line.startswith("git bisect start")), "")
    text = "\0".join([str(Path(start).resolve()), Path(start).read_text(), started, *command])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- one step --------------------------------------------------------------------------------------------------


@dataclass
class StepVerdict:
    code: int
    records: list[RunRecord]
    belief: RateBelief
    needed: int | None  # passes that make a good, None: more than MAX_PASSES
    why: str

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.records if r.outcome == outcome)


Runner = Callable[[Path], tuple[str | None, str | None, str]]


def run_step(
    command: list[str],
    *,
    runs: int = DEFAULT_RUNS,
    signature: str | None = None,
    failure_rate: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    log_dir: Path | None = None,
    run: Runner | None = None,
    key: str | None = None,
    commit: str = "HEAD",
) -> StepVerdict:
    """Decide one commit: bad at the first run showing the bug, good once enough runs passed, else skip."""
    folder = private_dir(log_dir or state_dir() / "bisect-steps" / (key or time.strftime("%Y%m%d-%H%M%S")))
    session = StepSession.open(folder, key)
    signature = signature or session.signature
    belief = RateBelief.given(failure_rate) if failure_rate else RateBelief.learned(*session.learned())
    step_dir = folder / f"step-{len(session.steps) + 1}-{commit[:12]}"
    runner = run or (lambda folder: run_hil(command, folder))
    verdict = _runs(lambda index: runner(step_dir / f"run-{index}"), signature, belief, confidence, runs)
    _remember(session, verdict, commit, signature)
    return verdict


def _runs(
    run: Callable[[int], tuple[str | None, str | None, str]], signature: str | None, belief: RateBelief,
    confidence: float, runs: int,
) -> StepVerdict:  # fmt: skip
    needed = belief.passes_needed(confidence)
    target, enough = max(runs, needed or MAX_PASSES), needed is not None
    records: list[RunRecord] = []
    passes = 0

    def verdict(code: int, why: str) -> StepVerdict:
        return StepVerdict(code, records, belief, needed, why)

    for index in range(1, 2 * target + 1):  # infra and other failures get a second chance each
        seen, sig, reason = run(index)
        record = RunRecord("HEAD", index, seen, sig, outcome_of(seen, sig, signature), reason=reason)
        records.append(record)
        passes = sum(r.outcome == Outcome.PASS for r in records)
        if record.outcome == Outcome.MATCH:
            return verdict(BAD_EXIT, f"run {index} showed the bug ({record.signature or record.verdict})")
        if passes >= target:
            if enough:
                return verdict(GOOD_EXIT, f"{passes} runs passed")
            return verdict(SKIP_EXIT, f"{passes} passes are still too few to call it good")
        if len(records) >= UNTESTABLE_AFTER and not any(r.outcome.informative for r in records[-UNTESTABLE_AFTER:]):
            return verdict(SKIP_EXIT, f"{UNTESTABLE_AFTER} runs in a row told nothing (infra or another failure)")
    return verdict(SKIP_EXIT, f"only {passes} of the {target} passes needed, the other runs told nothing")


def _remember(session: StepSession, verdict: StepVerdict, commit: str, signature: str | None) -> None:
    match = next((r for r in verdict.records if r.outcome == Outcome.MATCH), None)
    if session.signature is None and match is not None:
        session.signature = signature or match.signature or f"{match.verdict}:unsigned"
    counts = {o.value: verdict.count(o) for o in Outcome}
    session.steps.append({"commit": commit, **counts, "exit": verdict.code})
    session.save()


# --- the command line ------------------------------------------------------------------------------------------


STEP_HELP = """\
One commit's answer for `git bisect run`: exit 0 good, 1 bad, 125 skip (can't tell).
Good only after enough passing runs for the failure rate (--failure-rate, or learned
from earlier steps of the same git bisect session); bad at the first run with the
bug's signature; skip when the runs are infra or another failure."""


def run_step_parser(defaults: dict[str, Any]) -> Parser:
    parser = Parser(
        prog="hil bisect run-step",
        description=STEP_HELP,
        epilog="example:\n  git bisect run sh -c 'make && hil bisect run-step --failure-rate 0.3 -- hil run boot'\n"
        + HINT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=positive_int, help="passes at least, before a good (default 3)")
    parser.add_argument("--signature", help="the bug's signature (default: the session's first failure)")
    parser.add_argument("--failure-rate", type=probability, help="how often a run of a bad commit shows the bug")
    parser.add_argument("--confidence", type=probability,
                        help="a good needs the chance that a bad commit passes every run below 1 - this")  # fmt: skip
    parser.add_argument("--timeout-factor", type=positive_float, help="added to a `hil run` that lacks it")
    parser.add_argument("--log-dir", type=Path, help="where the runs and session.json go")
    parser.set_defaults(**defaults)
    return parser


def run_step_command(args: Any, rest: list[str], terminal: Any) -> int:
    """`hil bisect run-step [options] -- CMD`: its own options (and --help) come before the `--`."""
    split = rest.index("--") if "--" in rest else len(rest)
    defaults = {name: getattr(args, name, None) for name in
                ("runs", "signature", "failure_rate", "confidence", "timeout_factor", "log_dir")}  # fmt: skip
    options = run_step_parser(defaults).parse_args(rest[:split])
    command = rest[split + 1 :]
    if not command:
        raise UsageError("give the run after `--`: hil bisect run-step [--failure-rate R] -- hil run SCENARIO ...")
    command = with_timeout_factor(command, options.timeout_factor)
    head = _git("rev-parse", "HEAD") or "HEAD"
    verdict = run_step(command, runs=options.runs or DEFAULT_RUNS, signature=options.signature,
                       failure_rate=options.failure_rate, confidence=options.confidence or DEFAULT_CONFIDENCE,
                       log_dir=options.log_dir, key=session_key(command), commit=head)  # fmt: skip
    print_step(terminal, verdict)
    return verdict.code


def print_step(terminal: Any, verdict: StepVerdict) -> None:
    for record in verdict.records:
        terminal.print(f"  run {record.index}: {record.verdict} {record.signature or ''} -> {record.outcome}")
    word = {GOOD_EXIT: "good", BAD_EXIT: "bad", SKIP_EXIT: "skip (can't tell)"}[verdict.code]
    terminal.print(f"{word}: {verdict.why}")
    passes = verdict.count(Outcome.PASS)
    if verdict.code != BAD_EXIT:
        miss = verdict.belief.miss(passes)
        terminal.print(f"  sure to {1 - miss:.1%}: a bad commit passes {passes} runs in a row {miss:.1%} of the time")
        terminal.print(f"  (failure rate {verdict.belief.source})")
        terminal.print(f"  {HINT}")
