"""Shards: a run set split into N parts for N CI jobs (GitLab's `parallel: N`), and merged back.

The split must come out the same in every job without the jobs talking to each other, so it depends only
on the plan and on a table of durations: cells are placed longest first (ties by cell id) onto the part
with the least work so far (LPT scheduling, within 4/3 of the best possible makespan). Durations are what
each cell last took on this machine (kept in the cache, updated after every run set) or, for a cell never
measured, a static estimate from its scenario. The parts of a plan never write that table (a part run
after its sibling would otherwise split by other numbers); whole run sets and `hil report merge` do.
Jobs whose caches differ could still split differently: every
shard records the whole plan and a digest of its split, and `hil report merge` checks that the shards
agree and that every cell ran exactly once, so a disagreement is an infra verdict naming the cells, never a
silently smaller gate.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil.errors import HilError
from hil.paths import cache_dir
from hil.results import Cell, CellResult, RunSetResult, Verdict
from hil.scenario import load_scenario
from hil.store import atomic_write_json

DURATIONS_FILE = "cell-durations.json"
# A fresh machine's guesses (TCG, rounded up): a cold boot, a boot restored from a snapshot, per step and
# per device (devices are set up, hot-added or probed).
BOOT_ESTIMATE_S = 20.0
RESTORE_ESTIMATE_S = 8.0
STEP_ESTIMATE_S = 3.0
DEVICE_ESTIMATE_S = 4.0


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as GitLab's CI_NODE_INDEX
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


def parse_shard(text: str) -> Shard:
    """`K/N` with 1 <= K <= N; raises ValueError with the fix in its words."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not K/N. Fix: give the part and the number of parts, e.g. 1/2")
    index, total = int(match[1]), int(match[2])
    if not 1 <= index <= total:
        last = max(total, 1)
        raise ValueError(f"{text!r}: K must be from 1 to N. Fix: give 1/{last} ... {last}/{last}")
    return Shard(index, total)


# --- durations ------------------------------------------------------------------------------------------------


def duration_key(cell: Cell) -> str:
    """What a cell's duration is known by: its scenario, CPUs and options; repeats take the same time."""
    return json.dumps([cell.scenario, cell.smp, list(cell.args)])


def durations_path() -> Path:
    return cache_dir() / DURATIONS_FILE


def load_durations(path: Path | None = None) -> dict[str, float]:
    try:
        data = json.loads((path or durations_path()).read_text())
    except (OSError, ValueError):
        return {}
    return {key: float(value) for key, value in data.items() if isinstance(value, int | float) and value > 0}


def record_durations(result: RunSetResult, path: Path | None = None) -> None:
    """Keep what each passing cell took. A hang lasts as long as its budget and a failure ends anywhere, so
    they say nothing about the next run; a cell that never ran or was cut short says nothing either."""
    durations = load_durations(path)
    for cell in result.cells:
        if cell.verdict == Verdict.PASS and not result.stopped:
            durations[duration_key(cell.cell)] = round(cell.attempts[-1].seconds, 2)
    target = path or durations_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(target, dict(sorted(durations.items())))


def static_estimate(cell: Cell) -> float:
    """A cell never measured here: its boot, plus a few seconds per step and per device."""
    try:
        scenario = load_scenario(cell.scenario)
    except HilError:  # a scenario that cannot load fails later with its own message; the split goes on
        return BOOT_ESTIMATE_S
    boot = RESTORE_ESTIMATE_S if scenario.snapshot else BOOT_ESTIMATE_S
    return boot + STEP_ESTIMATE_S * len(scenario.steps) + DEVICE_ESTIMATE_S * len(scenario.devices)


def estimates(cells: Sequence[Cell], durations: Mapping[str, float]) -> dict[str, float]:
    return {cell.id: durations.get(duration_key(cell)) or static_estimate(cell) for cell in cells}


# --- the split ------------------------------------------------------------------------------------------------


def split(cells: Sequence[Cell], total: int, seconds: Mapping[str, float]) -> list[list[Cell]]:
    """`total` parts of `cells`, balanced by `seconds` (cell id -> estimate); each part keeps plan order."""
    loads = [0.0] * total
    owner: dict[str, int] = {}
    for cell in sorted(cells, key=lambda c: (-seconds[c.id], c.id)):
        part = min(range(total), key=lambda k: (loads[k], k))
        owner[cell.id] = part
        loads[part] += seconds[cell.id]
    return [[cell for cell in cells if owner[cell.id] == part] for part in range(total)]


def split_digest(parts: Sequence[Sequence[Cell]]) -> str:
    text = json.dumps([[cell.id for cell in part] for part in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def shard_cells(cells: Sequence[Cell], shard: Shard, durations: Mapping[str, float]) -> tuple[list[Cell], dict]:
    """The cells of `shard`, and what its runset.json records so a merge can check the shards agree."""
    seconds = estimates(cells, durations)
    parts = split(cells, shard.total, seconds)
    record = {
        "index": shard.index,
        "total": shard.total,
        "plan": [cell.id for cell in cells],
        "split_digest": split_digest(parts),
        "estimated_s": round(sum(seconds[cell.id] for cell in parts[shard.index - 1]), 1),
    }
    return parts[shard.index - 1], record


# --- the merge ------------------------------------------------------------------------------------------------


def merge(results: Sequence[RunSetResult], root: Path, name: str | None = None) -> RunSetResult:
    """One run set of many shards' (or any run sets'): every cell once, the verdict the worst of all."""
    cells: list[CellResult] = [cell for result in results for cell in result.cells]
    plan = next((r.shard["plan"] for r in results if r.shard and "plan" in r.shard), [])
    order = {cell_id: index for index, cell_id in enumerate(plan)}
    cells.sort(key=lambda cell: order.get(cell.cell.id, len(order)))  # the plan's order, as one set would be
    problems = coverage_problems(results)
    stopped = "; ".join(problems + [f"shard {_label(r)} was {r.stopped}" for r in results if r.stopped]) or None
    merged = RunSetResult(
        name or (results[0].shard or {}).get("name") or results[0].name,
        root,
        cells,
        min((r.started for r in results if r.started), default=""),
        max((r.duration_s for r in results), default=0.0),  # shards run side by side
        sum(r.jobs for r in results),
        max((r.retry_infra for r in results), default=0),
        stopped,
        {k: v for r in results for k, v in r.skipped.items()},
    )
    merged.shard = {"merged": [_label(r) for r in results], "sources": [str(r.root) for r in results]}
    return merged


def coverage_problems(results: Sequence[RunSetResult]) -> list[str]:
    """What makes a set of shards not one whole run set: disagreeing splits, cells missing or run twice."""
    shards = [r.shard for r in results if r.shard and "plan" in r.shard]
    if not shards:
        return []
    problems = []
    if len({s["split_digest"] for s in shards}) > 1 or len({s["total"] for s in shards}) > 1:
        problems.append("the shards split the plan differently (their duration tables differed)")
    seen: dict[str, int] = {}
    for result in results:
        for cell in result.cells:
            seen[cell.cell.id] = seen.get(cell.cell.id, 0) + 1
    plan = shards[0]["plan"]
    missing = [cell for cell in plan if cell not in seen]
    twice = sorted(cell for cell, count in seen.items() if count > 1)
    if missing:
        problems.append(f"never run in any shard: {', '.join(missing)}")
    if twice:
        problems.append(f"run in more than one shard: {', '.join(twice)}")
    indexes = sorted(s["index"] for s in shards)
    if indexes != list(range(1, shards[0]["total"] + 1)):
        problems.append(f"shards given: {', '.join(map(str, indexes))} of {shards[0]['total']}")
    return problems


def _label(result: RunSetResult) -> str:
    shard: dict[str, Any] = result.shard or {}
    return f"{shard['index']}/{shard['total']}" if "index" in shard else str(result.root)
