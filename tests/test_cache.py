"""Cache areas and atomic files: one maker per entry across processes, nothing half-made ever visible."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil.cache import PRUNE_MIN_IDLE_S, CacheArea, prune_least_recent
from hil.store import atomic_output, atomic_write

WAITING = "Waiting for the other maker"

# A maker in its own process: builds an entry of two files and stops between them until told to go on.
MAKER = """
import contextlib, os, sys, time
from pathlib import Path
from hil.cache import PRUNE_MIN_IDLE_S, CacheArea, prune_least_recent

root, key, signals = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])


class FileConsole:
    def status(self, text):
        (signals / "waiting").write_text(text)
        return contextlib.nullcontext()


def build(scratch):
    entry = scratch / "entry"
    entry.mkdir()
    (entry / "first").write_text("half")
    (signals / "building").write_text(str(os.getpid()))
    while not (signals / "go").exists():
        time.sleep(0.01)
    (entry / "second").write_text(str(os.getpid()))
    with (signals / "builds").open("a") as log:
        log.write(f"{os.getpid()}\\n")
    return entry


area = CacheArea(root, waiting=sys.argv[4], lock_per_key=True)
print((area.make(key, build, console=FileConsole()) / "second").read_text())
"""


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout:.0f} s"
        time.sleep(0.01)


def _start(area: CacheArea, key: str, signals: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", MAKER, str(area.root), key, str(signals), WAITING]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _maker_halfway(tmp_path: Path) -> Iterator[tuple[CacheArea, Path, list[subprocess.Popen[str]]]]:
    """A per-key area and a maker process stopped halfway through building "k1"; no maker outlives the test."""
    area = CacheArea(tmp_path / "area", lock_per_key=True)
    signals = tmp_path / "signals"
    signals.mkdir()
    makers = [_start(area, "k1", signals)]
    try:
        _wait_for(signals / "building")
        yield area, signals, makers
    finally:
        for child in makers:
            child.kill()
            child.wait()


def _two_files(scratch: Path, content: str = "new") -> Path:
    entry = scratch / "entry"
    entry.mkdir()
    (entry / "first").write_text(content)
    (entry / "second").write_text(content)
    return entry


def test_concurrent_makers_of_one_key_build_once_and_the_waiter_uses_the_result(tmp_path: Path) -> None:
    with _maker_halfway(tmp_path) as (area, signals, makers):
        makers.append(_start(area, "k1", signals))
        _wait_for(signals / "waiting")
        assert (signals / "waiting").read_text() == WAITING
        assert area.find("k1") is None and area.entries() == []  # half-made: not to be seen
        (signals / "go").touch()
        outputs = [child.communicate(timeout=30)[0] for child in makers]
        assert [child.returncode for child in makers] == [0, 0]
    builder = (signals / "building").read_text()
    assert (signals / "builds").read_text() == f"{builder}\n"  # one build
    assert outputs == [f"{builder}\n", f"{builder}\n"]  # the waiter read the builder's entry
    assert sorted(path.name for path in area.root.iterdir()) == [".lock-k1", "k1"]


def test_a_killed_maker_leaves_no_entry_and_the_next_maker_removes_its_leftovers(tmp_path: Path) -> None:
    with _maker_halfway(tmp_path) as (area, _, makers):
        makers[0].send_signal(signal.SIGKILL)
        makers[0].wait(timeout=30)
    assert area.find("k1") is None
    assert [path.name.startswith(".build-k1-") for path in area.root.glob(".build-*")] == [True]
    made = area.make("k1", _two_files)  # the dead maker's lock died with it: no wait
    assert (made / "second").read_text() == "new"
    assert sorted(path.name for path in area.root.iterdir()) == [".lock-k1", "k1"]


def test_find_never_sees_an_entry_before_it_is_published(tmp_path: Path) -> None:
    area = CacheArea(tmp_path / "area")
    with area.lock(), area.scratch("k1") as scratch:
        entry = _two_files(scratch)
        assert area.find("k1") is None and area.entries() == []
        area.publish(entry, "k1")
        assert area.find("k1") == area.root / "k1" and area.entries() == [area.root / "k1"]
    assert not list(area.root.glob(".build-*"))


def test_makers_of_other_keys_do_not_wait_for_each_other(tmp_path: Path) -> None:
    with _maker_halfway(tmp_path) as (area, _, _):
        other = threading.Thread(target=area.make, args=("k2", _two_files), daemon=True)
        other.start()
        other.join(timeout=30)
        assert not other.is_alive() and area.find("k2") is not None
        assert area.find("k1") is None


def test_a_lock_removes_only_the_leftovers_it_guards(tmp_path: Path) -> None:
    per_key = CacheArea(tmp_path / "per-key", lock_per_key=True)
    whole = CacheArea(tmp_path / "whole")
    for area in (per_key, whole):
        for name in (".build-k1-abc_123", ".build-k1-x-abc_123", ".build-k2-abc_123"):
            (area.root / name).mkdir(parents=True)
    with per_key.lock("k1"):
        assert sorted(p.name for p in per_key.root.glob(".build-*")) == [".build-k1-x-abc_123", ".build-k2-abc_123"]
    with whole.lock():
        assert not list(whole.root.glob(".build-*"))


def test_read_only_publication_and_a_forced_rebuild(tmp_path: Path) -> None:
    area = CacheArea(tmp_path / "area", private=True)
    with area.scratch("k1") as scratch:
        (scratch / "sub").mkdir()
        (scratch / "sub" / "file").write_text("old")
        folder = area.publish(scratch, "k1", read_only=True)
    assert stat.S_IMODE((folder / "sub" / "file").stat().st_mode) == 0o444
    assert stat.S_IMODE(area.root.stat().st_mode) == 0o700
    with area.scratch("k1") as scratch:
        again = area.publish(_two_files(scratch), "k1")
    assert sorted(path.name for path in again.iterdir()) == ["first", "second"]
    assert stat.S_IMODE((again / "first").stat().st_mode) != 0o444
    made = area.make("single.raw", lambda scratch: atomic_write(scratch / "disk", b"data"), read_only=True)
    assert made.read_bytes() == b"data" and stat.S_IMODE(made.stat().st_mode) == 0o444
    assert sorted(path.name for path in area.root.iterdir()) == [".lock", "k1", "single.raw"]


def test_names_for_locks_and_scratch_are_no_keys(tmp_path: Path) -> None:
    area = CacheArea(tmp_path / "area")
    for key in ("", ".lock", ".build-k1-abc", "../elsewhere"):
        with pytest.raises(ValueError):
            area.path(key)


def test_an_atomic_file_is_all_there_or_the_old_one_stays(tmp_path: Path) -> None:
    path = tmp_path / "out.bin"
    atomic_write(path, b"old", mode=0o644)
    with pytest.raises(RuntimeError), atomic_output(path) as temporary:
        temporary.write_bytes(b"ne")
        raise RuntimeError("killed halfway")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with atomic_output(path, durable=True, mode=0o755) as temporary:
        subprocess.run(["cp", "/bin/true", str(temporary)], check=True)  # another program writes it
    assert path.read_bytes() == Path("/bin/true").read_bytes() and stat.S_IMODE(path.stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def _aged(path: Path, size: int, age_s: float) -> Path:
    path.write_bytes(bytes(size))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_an_area_with_a_limit_keeps_the_most_recently_used_entries(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HIL_TEST_AREA_MB", "2")
    area = CacheArea(tmp_path / "area", limit_env="HIL_TEST_AREA_MB")
    area.root.mkdir()
    for name, age in (("old", 7200), ("older", 9000), ("oldest", 9999)):
        _aged(area.path(name), 1 << 20, age)
    area.find("oldest")  # used now: it stays, and "older" is now the least recently used
    made = area.make("new", lambda scratch: _aged(scratch / "f", 1 << 19, 0))
    assert made.is_file()
    assert sorted(p.name for p in area.entries()) == ["new", "oldest"]


def test_entries_used_in_the_last_minutes_are_never_pruned(tmp_path: Path) -> None:
    busy = [_aged(tmp_path / f"e{i}", 1 << 20, 60) for i in range(3)]
    idle = _aged(tmp_path / "idle", 1 << 20, PRUNE_MIN_IDLE_S + 60)
    removed = prune_least_recent([[p] for p in (*busy, idle)], 1 << 20)
    assert removed == [[idle]] and all(p.exists() for p in busy)


def test_an_area_without_a_limit_is_never_pruned(tmp_path: Path) -> None:
    area = CacheArea(tmp_path / "area")
    area.root.mkdir()
    _aged(area.path("old"), 1 << 20, 99999)
    assert area.prune() == [] and area.find("old") is not None
