"""Scenarios: TOML files naming a guest, its machine, and the steps to run once it has booted.

Loaded by name (the files shipped in hil/scenarios) or by path. Every mistake in a file is reported with
the file, the key and what to write instead, never a traceback.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hil.errors import UsageError

STEP_KINDS = ("run",)


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    command: str = ""
    expect_status: int | None = 0
    expect_output: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    source: Path
    guest: str = "reference"
    smp: int | None = None
    memory_mb: int | None = None
    timeout_factor: float | None = None
    tags: tuple[str, ...] = ()
    steps: tuple[Step, ...] = field(default_factory=tuple)


class ScenarioError(UsageError):
    def __init__(self, source: Path | str, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{source}: key '{key}': {problem}. Fix: {fix}")


def builtin_dir() -> Path:
    return Path(str(resources.files("hil") / "scenarios"))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.toml"))


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by built-in name (`boot`) or by a path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise UsageError(f"scenario file {path} does not exist")
        return parse_scenario(path)
    candidate = builtin_dir() / f"{name_or_path}.toml"
    if not candidate.is_file():
        known = ", ".join(builtin_names())
        raise UsageError(f"unknown scenario {name_or_path!r}; built-in scenarios: {known} (or give a .toml path)")
    return parse_scenario(candidate)


def parse_scenario(path: Path) -> Scenario:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML: {err}") from None
    _only_keys(path, "", data, {"name", "description", "guest", "tags", "machine", "budgets", "steps"})
    machine = _table(path, data, "machine")
    _only_keys(path, "machine.", machine, {"smp", "memory"})
    budgets = _table(path, data, "budgets")
    _only_keys(path, "budgets.", budgets, {"timeout_factor"})
    steps = data.get("steps", [])
    if not isinstance(steps, list):
        raise ScenarioError(path, "steps", "must be an array of tables", "write each step as [[steps]]")
    return Scenario(
        name=_typed(path, data, "name", str, path.stem),
        description=_typed(path, data, "description", str, ""),
        source=path,
        guest=_typed(path, data, "guest", str, "reference"),
        smp=_positive(path, machine, "machine.smp", "smp"),
        memory_mb=_positive(path, machine, "machine.memory", "memory"),
        timeout_factor=_typed(path, budgets, "timeout_factor", (int, float), None, prefix="budgets."),
        tags=tuple(_typed(path, data, "tags", list, [])),
        steps=tuple(_parse_step(path, index, raw) for index, raw in enumerate(steps)),
    )


def _parse_step(path: Path, index: int, raw: Any) -> Step:
    where = f"steps[{index}]"
    if not isinstance(raw, dict):
        raise ScenarioError(path, where, "must be a table", "write the step as [[steps]] with key = value lines")
    kinds = [kind for kind in STEP_KINDS if kind in raw]
    if len(kinds) != 1:
        raise ScenarioError(path, where, f"needs exactly one step kind, found {kinds or 'none'}",
                            f"give one of: {', '.join(STEP_KINDS)}")  # fmt: skip
    _only_keys(path, f"{where}.", raw, {"name", "run", "expect_status", "expect_output", "timeout"})
    command = _typed(path, raw, "run", str, "", prefix=f"{where}.")
    return Step(
        name=_typed(path, raw, "name", str, command[:40], prefix=f"{where}."),
        kind="run",
        command=command,
        expect_status=_typed(path, raw, "expect_status", int, 0, prefix=f"{where}."),
        expect_output=_typed(path, raw, "expect_output", str, None, prefix=f"{where}."),
        timeout=float(_typed(path, raw, "timeout", (int, float), 30.0, prefix=f"{where}.")),
    )


def _only_keys(path: Path, prefix: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ScenarioError(
                path, f"{prefix}{key}", "is not a known key", f"use one of {', '.join(sorted(allowed))}"
            )


def _table(path: Path, data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ScenarioError(path, key, "must be a table", f"write it as [{key}] followed by key = value lines")
    return value


def _typed(path: Path, table: dict[str, Any], key: str, kind: Any, default: Any, prefix: str = "") -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ScenarioError(path, f"{prefix}{key}", f"is {type(value).__name__} {value!r}", f"give a {names}")
    return value


def _positive(path: Path, table: dict[str, Any], where: str, key: str) -> int | None:
    value = _typed(path, table, key, int, None, prefix=where.rsplit(".", 1)[0] + ".")
    if value is not None and value < 1:
        raise ScenarioError(path, where, f"is {value}", "give a whole number of at least 1")
    return value
