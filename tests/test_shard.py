"""Shards of a run set and their merge: every cell in exactly one shard, balanced, and merged back whole.

The split and the merge are pure (cells and run-set results); the last test runs real `hil run --shard`
processes against the reference guest and merges their folders with `hil report merge`.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.results import Attempt, Cell, CellResult, RunSetResult, Verdict
from hil.runset import expand_cells, load_suite, numbered
from hil.shard import (
    Shard,
    coverage_problems,
    durations_path,
    estimates,
    load_durations,
    merge,
    parse_shard,
    record_durations,
    shard_cells,
    split,
)


def _cells(count: int) -> list[Cell]:
    return numbered(Cell(f"s{i % 5}", f"s{i % 5}", smp=1 + i % 3) for i in range(count))


def test_parse_shard() -> None:
    assert parse_shard("1/2") == Shard(1, 2) and parse_shard(" 3 / 3 ") == Shard(3, 3)
    for bad in ("0/2", "3/2", "1/0", "x", "1-2", "/2", "-1/2"):
        with pytest.raises(ValueError, match="Fix:"):
            parse_shard(bad)


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7, 30])
def test_every_cell_is_in_exactly_one_shard(total: int) -> None:
    rng = random.Random(total)
    cells = _cells(23)
    seconds = {cell.id: rng.uniform(1, 120) for cell in cells}
    parts = split(cells, total, seconds)
    assert len(parts) == total
    ids = [cell.id for part in parts for cell in part]
    assert sorted(ids) == sorted(cell.id for cell in cells)  # each once, none lost
    for part in parts:  # each part keeps the plan's order
        assert part == [cell for cell in cells if cell in part]


def test_the_split_is_the_same_in_every_job() -> None:
    cells = _cells(17)
    durations = {json.dumps([c.scenario, c.smp, []]): float(5 + i) for i, c in enumerate(cells)}
    first = [shard_cells(cells, Shard(k, 4), durations) for k in range(1, 5)]
    again = [shard_cells(list(cells), Shard(k, 4), dict(durations)) for k in range(1, 5)]
    assert first == again
    assert len({record["split_digest"] for _, record in first}) == 1


@pytest.mark.parametrize("seed", range(20))
def test_balance_within_the_list_scheduling_bound(seed: int) -> None:
    """Any greedy list schedule ends within sum/N + (1 - 1/N) * longest of the perfect split (Graham); the
    longest-first order used here is usually much closer, so check both the bound and a tighter spread."""
    rng = random.Random(seed)
    cells = _cells(rng.randrange(6, 40))
    seconds = {cell.id: rng.choice([6.0, 9.0, 25.0, 60.0]) * rng.uniform(0.8, 1.2) for cell in cells}
    total = rng.randrange(2, 6)
    loads = [sum(seconds[c.id] for c in part) for part in split(cells, total, seconds)]
    whole, longest = sum(seconds.values()), max(seconds.values())
    assert max(loads) <= whole / total + (1 - 1 / total) * longest + 1e-9
    assert max(loads) - min(loads) <= longest + 1e-9


def test_the_gate_suite_on_two_shards_is_balanced_by_recorded_durations() -> None:
    cells = numbered(load_suite("gate").cells)
    # What the gate's runs took on this machine (seconds): Redox kernel runs are short, device runs long.
    measured = {"kernel-smoke": 3.0, "boot": 8.0, "nvme-uring": 14.0, "xhci-storage": 22.0, "e1000-net": 12.0}
    durations = {json.dumps([c.scenario, c.smp, list(c.args)]): measured[c.label] for c in cells}
    seconds = estimates(cells, durations)
    parts = split(cells, 2, seconds)
    loads = [sum(seconds[c.id] for c in part) for part in parts]
    assert abs(loads[0] - loads[1]) <= max(measured.values())
    assert sum(loads) == pytest.approx(sum(seconds.values()))


def test_cells_never_measured_get_a_static_estimate(tmp_path: Path) -> None:
    cells = expand_cells(["boot", "nvme-uring"])
    seconds = estimates(cells, {})
    assert all(value > 0 for value in seconds.values())
    assert seconds[cells[1].id] != seconds[cells[0].id]  # from the scenario, not one constant


def _result(root: Path, cells: list[Cell], verdicts: dict[str, Verdict], shard: dict | None) -> RunSetResult:
    results = []
    for cell in cells:
        run_dir = root / "runs" / cell.id / "try1"
        results.append(CellResult(cell, [Attempt(run_dir, verdicts.get(cell.id, Verdict.PASS), "r", 0, 4.5)]))
    return RunSetResult(f"gate-shard{shard['index'] if shard else 0}", root, results, "2026-12-03T10:00:00",
                        30.0, 2, 1, None, {}, shard)  # fmt: skip


def _shards(tmp_path: Path, cells: list[Cell], total: int, verdicts: dict[str, Verdict] | None = None):
    out = []
    for k in range(1, total + 1):
        mine, record = shard_cells(cells, Shard(k, total), {})
        out.append(_result(tmp_path / f"shard-{k}", mine, verdicts or {}, record))
    return out


def test_a_merge_of_every_shard_is_the_whole_plan(tmp_path: Path) -> None:
    cells = _cells(9)
    merged = merge(_shards(tmp_path, cells, 3), tmp_path / "merged")
    assert [c.cell.id for c in merged.cells] == [c.id for c in cells]  # every cell, in the plan's order
    assert merged.verdict == Verdict.PASS and merged.stopped is None
    data = merged.to_json()
    assert data["shard"]["merged"] == ["1/3", "2/3", "3/3"]
    assert all(cell["report_dir"].startswith("../shard-") for cell in data["cells"])  # links to the shards


def test_the_merged_verdict_is_the_worst(tmp_path: Path) -> None:
    cells = _cells(6)
    failing = {cells[4].id: Verdict.HANG}
    assert merge(_shards(tmp_path, cells, 2, failing), tmp_path / "m").verdict == Verdict.FAIL
    infra = {cells[1].id: Verdict.INFRA}
    assert merge(_shards(tmp_path, cells, 2, infra), tmp_path / "m2").verdict == Verdict.INFRA


def test_a_missing_shard_or_disagreeing_split_is_never_green(tmp_path: Path) -> None:
    cells = _cells(8)
    shards = _shards(tmp_path, cells, 3)
    merged = merge(shards[:2], tmp_path / "m")
    assert merged.verdict == Verdict.INFRA
    assert "never run in any shard" in merged.stopped and "shards given: 1, 2 of 3" in merged.stopped
    other, record = shard_cells(cells, Shard(3, 3), {json.dumps([cells[0].scenario, cells[0].smp, []]): 999.0})
    odd = _result(tmp_path / "odd", other, {}, record)
    problems = coverage_problems([*shards[:2], odd])
    assert any("split the plan differently" in p for p in problems)


def test_durations_are_recorded_and_read_back(tmp_path: Path) -> None:
    cells = _cells(3)
    result = _result(tmp_path, cells, {cells[2].id: Verdict.HANG}, None)
    path = tmp_path / "durations.json"
    record_durations(result, path)
    known = load_durations(path)
    assert len(known) == 2 and set(known.values()) == {4.5}  # the hang's time (its budget) is not kept
    path.write_text("{not json")
    assert load_durations(path) == {}  # a damaged table: estimates, not a crash


def _hil(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], capture_output=True, text=True, timeout=600,
                          env=env)  # fmt: skip


@pytest.fixture
def skewed_durations() -> Iterator[Path]:
    """This machine's durations table, set so that real measurements would split 6 boots differently."""
    path = durations_path()
    kept = path.read_bytes() if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({json.dumps(["boot", 1, []]): 100.0, json.dumps(["boot", 2, []]): 1.0}))
    yield path
    if kept is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(kept)


def test_two_real_shards_merge_into_one_report(tmp_path: Path, skewed_durations: Path) -> None:
    """`hil run boot --smp 1,2 --repeat 3 --shard K/2` on the reference guest, one part after the other as
    on a desk, then `hil report merge`."""
    table = skewed_durations.read_bytes()
    for k in (1, 2):
        done = _hil("run", "boot", "--smp", "1,2", "--repeat", "3", "--shard", f"{k}/2", "-j", "2",
                    "--report-dir", str(tmp_path / f"shard-{k}"))  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"(shard {k}/2 of 6 runs" in done.stdout
        # A part leaves the table alone: part 2 must split by the numbers part 1 split by.
        assert skewed_durations.read_bytes() == table
    shards = [json.loads((tmp_path / f"shard-{k}" / "runset.json").read_text()) for k in (1, 2)]
    assert [len(s["cells"]) for s in shards] == [2, 4]  # by the table: the three 100 s boots are not together
    assert shards[0]["shard"]["split_digest"] == shards[1]["shard"]["split_digest"]  # part 1 changed nothing
    assert not {c["id"] for c in shards[0]["cells"]} & {c["id"] for c in shards[1]["cells"]}
    done = _hil("report", "merge", str(tmp_path), "--out", str(tmp_path / "merged"),
                "--junit", str(tmp_path / "merged.xml"), "--html", str(tmp_path / "html"))  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    merged = json.loads((tmp_path / "merged" / "runset.json").read_text())
    assert merged["verdict"] == "pass" and merged["counts"]["pass"] == 6
    assert {c["title"] for c in merged["cells"]} == {f"boot[smp={s},run={r}]" for s in (1, 2) for r in (1, 2, 3)}
    assert 100.0 not in load_durations(skewed_durations).values()  # the merge taught the table real times
    for cell in merged["cells"]:  # every run's artifacts are still reachable from the merged set
        assert (tmp_path / "merged" / cell["report_dir"] / "report.json").is_file()
    cases = ET.parse(tmp_path / "merged.xml").getroot().iter("testcase")
    assert len({case.get("name") for case in cases if "[smp=" in (case.get("name") or "")}) == 6
    page = (tmp_path / "html" / "index.html").read_text()
    assert "boot[smp=2,run=3]" in page and "shard-2" in page
    # A shard missing from the merge: infra (exit 3), naming what never ran.
    done = _hil("report", "merge", str(tmp_path / "shard-1"), "--out", str(tmp_path / "half"))
    assert done.returncode == 3 and "never run in any shard" in done.stdout
