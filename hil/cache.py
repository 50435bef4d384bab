"""Cache areas: folders of hil's cache whose entries are made once, by one process, and never seen half-made.

Parallel test workers ask for the same artifact (a reference guest, a snapshot, an image) at the same moment,
and a build may be killed at any point. So every area follows one protocol:

- an entry is made under a lock (fcntl, so a killed maker's lock dies with it), one per area or one per key;
  whoever waits says so on the console and then finds the entry made;
- it is built in a scratch folder inside the area (`.build-<key>-*`), so publishing it is a rename on the
  same filesystem (os.replace), atomic: an entry is absent or complete, never half there; one that every
  run shares and none may write (a snapshot, a disk) is made read-only as it is published;
- scratch folders left by killed makers are removed by the next holder of the lock, the only time it is
  certain that nobody is still writing them;
- names starting with "." (locks, scratch) are never entries, so listing an area shows published ones only;
- keys carry digests of their inputs (hil's own sources too), so every change makes new entries: an area with
  a limit drops its least recently used ones beyond it after each new entry (finding one marks it used).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from hil.paths import cache_dir, private_dir

SCRATCH_PREFIX = ".build-"
AREA_LOCK = ".lock"
KEY_LOCK_PREFIX = ".lock-"
READ_ONLY = 0o444
# An entry used this recently is never pruned: another run may have found it and not yet opened it.
PRUNE_MIN_IDLE_S = 600


@dataclass(frozen=True)
class CacheArea:
    """A folder of entries by key: a str `name` is a folder of hil's cache, a Path one a folder the caller chose.

    `lock_per_key` lets makers of different keys work at once (snapshots, images); otherwise one lock
    guards the whole area (its key is known only under the lock, as with the reference guest's).
    """

    name: str | Path
    waiting: str = ""  # said on the console while another process holds the lock
    private: bool = False  # folder readable by the user only (it holds keys, or guest state)
    lock_per_key: bool = False
    limit_env: str = ""  # the variable that sets the area's limit in MB (none: the area is never pruned)
    default_limit_mb: int = 0

    @property
    def root(self) -> Path:
        # Looked up when used, not when defined: HIL_CACHE_DIR may change (tests point it elsewhere).
        return cache_dir() / self.name if isinstance(self.name, str) else self.name

    def path(self, key: str) -> Path:
        return self.root / _entry_name(key)

    def find(self, key: str) -> Path | None:
        """The published entry `key`, or None; a build in progress is never found (it is not there yet)."""
        path = self.path(key)
        if not path.exists():
            return None
        touch_used(path)
        return path

    def entries(self) -> list[Path]:
        """Every published entry (files and folders not starting with ".")."""
        if not self.root.is_dir():
            return []
        return sorted(path for path in self.root.iterdir() if not path.name.startswith("."))

    @contextlib.contextmanager
    def lock(self, key: str = "", console: Console | None = None) -> Iterator[None]:
        """Hold the lock for `key` (for the area, unless lock_per_key) and remove leftovers it guards."""
        if self.lock_per_key:
            lock_file = self._made() / f"{KEY_LOCK_PREFIX}{_entry_name(key)}"
        else:
            lock_file = self._made() / AREA_LOCK
        with _exclusive(lock_file, console, self.waiting):
            self.remove_leftovers(key)
            yield

    def remove_leftovers(self, key: str = "") -> None:
        """Delete what killed makers of `key` (of any key, with one lock per area) left in scratch folders.

        Only safe under the lock that guards them: lock() does it; an area guarded by another area's lock
        (its only maker works under that one) is swept by that lock's holder.
        """
        for leftover in self._leftovers(key):
            shutil.rmtree(leftover, ignore_errors=True)

    @contextlib.contextmanager
    def scratch(self, key: str = "") -> Iterator[Path]:
        """A new empty folder inside the area to build `key` in; removed with whatever is left in it."""
        prefix = f"{SCRATCH_PREFIX}{_entry_name(key) if key else ''}-"
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=self._made()))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def publish(self, built: Path, key: str, *, read_only: bool = False) -> Path:
        """Rename `built` (a file or folder in a scratch folder, or the scratch folder) into place as `key`.

        `read_only` makes every file of it 0444 first. An entry already there (a forced rebuild) is
        replaced: a file in one rename, a folder moved aside and deleted.
        """
        final = self.path(key)
        if read_only:
            for path in [built] if built.is_file() else built.rglob("*"):
                if path.is_file():
                    path.chmod(READ_ONLY)
        if final.is_dir():
            retired = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{key}-", dir=self.root))
            os.replace(final, retired / key)
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(built, final)
        return final

    def make(
        self, key: str, build: Callable[[Path], Path], *, console: Console | None = None, read_only: bool = False
    ) -> Path:
        """The entry `key`: found, or made now by `build(scratch)`, which returns what to publish.

        Only one process builds; the others wait for the lock, then find what it published.
        """
        found = self.find(key)
        if found is not None:
            return found
        with self.lock(key, console):
            found = self.find(key)
            if found is not None:
                return found
            with self.scratch(key) as scratch:
                made = self.publish(build(scratch), key, read_only=read_only)
        self.prune(keep=key)
        return made

    @property
    def limit_bytes(self) -> int | None:
        if not self.limit_env:
            return None
        return int(os.environ.get(self.limit_env, self.default_limit_mb)) << 20

    def prune(self, keep: str | None = None) -> list[str]:
        """Delete the least recently used entries beyond the area's limit (never `keep`); the names removed."""
        limit = self.limit_bytes
        if limit is None:
            return []
        kept = self.path(keep) if keep else None
        return [group[0].name for group in prune_least_recent([[p] for p in self.entries()], limit, kept)]

    def _made(self) -> Path:
        if self.private:
            return private_dir(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def _leftovers(self, key: str) -> list[Path]:
        """Scratch folders the lock for `key` guards: all of the area's, or those of `key` alone."""
        found = self.root.glob(f"{SCRATCH_PREFIX}*")
        if not self.lock_per_key:
            return list(found)
        # mkdtemp's random part has no "-", so "<key>-<random>" cannot be the scratch of a key "<key>-x".
        prefix = f"{SCRATCH_PREFIX}{key}-"
        return [path for path in found if path.name.startswith(prefix) and "-" not in path.name[len(prefix) :]]


def touch_used(path: Path) -> None:
    """Mark an entry used now (its mtime), for pruning; an entry this process cannot touch keeps its time."""
    with contextlib.suppress(OSError):
        os.utime(path)


def prune_least_recent(groups: Iterable[list[Path]], limit_bytes: int, keep: Path | None = None) -> list[list[Path]]:
    """Delete whole groups of files or folders (one entry each), the least recently used first, until the rest
    fit in `limit_bytes`; the group holding `keep`, and any used within PRUNE_MIN_IDLE_S, stay (but count).
    Returns the groups deleted."""
    ordered = sorted(groups, key=_last_used, reverse=True)
    total, removed, now = 0, [], time.time()
    for group in ordered:
        total += sum(_size(path) for path in group)
        if total > limit_bytes and keep not in group and now - _last_used(group) > PRUNE_MIN_IDLE_S:
            for path in group:
                _delete(path)
            removed.append(group)
    return removed


def _last_used(group: list[Path]) -> float:
    return max((path.stat().st_mtime for path in group if path.exists()), default=0.0)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.exists() else 0


def _delete(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _entry_name(key: str) -> str:
    """`key` as an entry's name: never a path elsewhere, nor a name the area keeps for locks and scratch."""
    if not key or key.startswith(".") or "/" in key:
        raise ValueError(f"{key!r} cannot name a cache entry")
    return key


@contextlib.contextmanager
def _exclusive(lock_file: Path, console: Console | None, waiting: str) -> Iterator[None]:
    """flock on `lock_file`; says `waiting` on `console` while another process holds it."""
    with lock_file.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with console.status(waiting) if console is not None and waiting else contextlib.nullcontext():
                fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
