"""Scenarios: TOML files naming a guest, its machine, its devices and the steps to run once it has booted.

Loaded by name (the files shipped in hil/scenarios) or by path. Every mistake in a file is reported with
the file, the key and what to write instead, never a traceback.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hil.devices.base import Device
from hil.devices.catalog import DeviceSpecError, device_from_table
from hil.errors import UsageError

NUMBER = (int, float)


@dataclass(frozen=True)
class Param:
    kind: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    help: str = ""


# Each step kind: the key naming it (its value is the main argument) and the other keys it takes.
STEP_KINDS: dict[str, dict[str, Param]] = {
    "run": {
        "run": Param(str, required=True, help="the shell command"),
        "expect_status": Param(int, 0, help="exit status required (default 0)"),
        "expect_output": Param(str, help="a regular expression the output must match"),
    },
    "console": {"console": Param(str, required=True, help="a regular expression to wait for on the console")},
    "hotplug": {"hotplug": Param(str, required=True, help='the id of a device with plug = "hotplug"')},
    "unplug": {"unplug": Param(str, required=True, help="the id of a hot-pluggable device")},
    "check_device": {"check_device": Param(str, required=True, help="the id of a device the guest must show")},
    "probe": {
        "probe": Param(str, required=True, help='the probe to run: "uring"'),
        "device": Param(str, help="the id of the device the probe works on"),
        "args": Param(str, "", help="arguments for the probe"),
        "expect_cases": Param(list, help="case names that must pass (default: every case)"),
        "allow_fail": Param(list, [], help="case names allowed to fail"),
    },
    "console_probe": {
        "console_probe": Param(str, required=True, help="the probe whose output the guest prints by itself"),
        "expect_cases": Param(list, help="case names that must pass (default: every case)"),
        "allow_fail": Param(list, [], help="case names allowed to fail"),
    },
    "host": {
        "host": Param(str, required=True, help='"send" (host -> guest port) or "receive" (guest -> host)'),
        "proto": Param(str, "tcp", help='"tcp" or "udp"'),
        "guest_port": Param(int, help="the guest port to reach (send)"),
        "payload": Param(str, "hil-payload", help="bytes to send"),
        "expect": Param(str, help="what must come back (send; default: the payload, an echo)"),
        "guest_command": Param(str, help="the guest command that sends (receive; {host_addr} {host_port})"),
    },
}
COMMON_STEP_KEYS = {"name": Param(str), "timeout": Param(NUMBER, 30.0)}
PROBES = ("uring",)
HOST_MODES = ("send", "receive")


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    params: dict[str, Any]
    timeout: float = 30.0

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


@dataclass(frozen=True)
class DeviceEntry:
    device: Device
    at_boot: bool


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    source: Path
    guest: str = "reference"
    smp: int | None = None
    memory_mb: int | None = None
    append: str = ""
    snapshot: bool = False
    initfs_probe: str | None = None
    timeout_factor: float | None = None
    tags: tuple[str, ...] = ()
    devices: tuple[DeviceEntry, ...] = ()
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
    """Scenarios are rebuilt from the file each time: devices hold per-run state (overlays, ports)."""
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML: {err}") from None
    _only_keys(path, "", data, {"name", "description", "guest", "tags", "machine", "budgets", "devices", "steps"})
    machine = _table(path, data, "machine")
    _only_keys(path, "machine.", machine, {"smp", "memory", "append", "snapshot", "initfs_probe"})
    budgets = _table(path, data, "budgets")
    _only_keys(path, "budgets.", budgets, {"timeout_factor"})
    devices = _parse_devices(path, _array(path, data, "devices"))
    steps = tuple(_parse_step(path, i, raw) for i, raw in enumerate(_array(path, data, "steps")))
    _check_references(path, devices, steps)
    return Scenario(
        name=_typed(path, data, "name", str, path.stem),
        description=_typed(path, data, "description", str, ""),
        source=path,
        guest=_typed(path, data, "guest", str, "reference"),
        smp=_positive(path, machine, "machine.", "smp"),
        memory_mb=_positive(path, machine, "machine.", "memory"),
        append=_typed(path, machine, "append", str, "", prefix="machine."),
        snapshot=_flag(path, machine, "snapshot", prefix="machine."),
        initfs_probe=_typed(path, machine, "initfs_probe", str, None, prefix="machine."),
        timeout_factor=_typed(path, budgets, "timeout_factor", NUMBER, None, prefix="budgets."),
        tags=tuple(_typed(path, data, "tags", list, [])),
        devices=devices,
        steps=steps,
    )


def _parse_devices(path: Path, tables: list[Any]) -> tuple[DeviceEntry, ...]:
    entries = []
    for index, table in enumerate(tables):
        where = f"devices[{index}]"
        if not isinstance(table, dict):
            raise ScenarioError(
                path, where, "must be a table", "write each device as [[devices]] with key = value lines"
            )
        try:
            device, at_boot = device_from_table(table, index)
        except DeviceSpecError as err:
            raise ScenarioError(path, f"{where}.{err.key}", err.problem, err.fix) from None
        entries.append(DeviceEntry(device, at_boot))
    ids = [e.device.id for e in entries]
    for duplicate in {i for i in ids if ids.count(i) > 1}:
        raise ScenarioError(path, "devices", f"id {duplicate!r} is used twice", "give every device its own id")
    return tuple(entries)


def _parse_step(path: Path, index: int, raw: Any) -> Step:
    where = f"steps[{index}]"
    if not isinstance(raw, dict):
        raise ScenarioError(path, where, "must be a table", "write the step as [[steps]] with key = value lines")
    kinds = [kind for kind in STEP_KINDS if kind in raw]
    if len(kinds) != 1:
        raise ScenarioError(path, where, f"needs exactly one step kind, found {kinds or 'none'}",
                            f"give one of: {', '.join(STEP_KINDS)}")  # fmt: skip
    kind = kinds[0]
    schema = {**STEP_KINDS[kind], **COMMON_STEP_KEYS}
    _only_keys(path, f"{where}.", raw, set(schema))
    params = {}
    for key, param in schema.items():
        if param.required and key not in raw:
            raise ScenarioError(path, f"{where}.{key}", "is missing", f"add {key} = ... ({param.help})")
        params[key] = _typed(path, raw, key, param.kind, param.default, prefix=f"{where}.")
    _check_choices(path, where, kind, params)
    timeout = float(params.pop("timeout"))
    name = params.pop("name") or f"{kind} {params[kind]}"[:60]
    return Step(name=name, kind=kind, params=params, timeout=timeout)


def _check_choices(path: Path, where: str, kind: str, params: dict[str, Any]) -> None:
    if kind == "probe" and params["probe"] not in PROBES:
        raise ScenarioError(path, f"{where}.probe", f"is {params['probe']!r}", f"use one of {', '.join(PROBES)}")
    if kind != "host":
        return
    if params["host"] not in HOST_MODES or params["proto"] not in ("tcp", "udp"):
        raise ScenarioError(path, f"{where}.host", f"is {params['host']!r} over {params['proto']!r}",
                            'use host = "send" or "receive" and proto = "tcp" or "udp"')  # fmt: skip
    needed = "guest_port" if params["host"] == "send" else "guest_command"
    if params[needed] is None:
        raise ScenarioError(
            path, f"{where}.{needed}", "is missing", f"add {needed} = ... for host = {params['host']!r}"
        )


def _check_references(path: Path, devices: tuple[DeviceEntry, ...], steps: tuple[Step, ...]) -> None:
    by_id = {e.device.id: e for e in devices}
    for index, step in enumerate(steps):
        key = step.kind if step.kind in ("hotplug", "unplug", "check_device") else "device"
        if key not in step.params or step[key] is None:
            continue
        target = by_id.get(step[key])
        where = f"steps[{index}].{key}"
        if target is None:
            known = ", ".join(by_id) or "none declared"
            raise ScenarioError(path, where, f"names unknown device {step[key]!r}", f"use a device id ({known})")
        if step.kind in ("hotplug", "unplug") and not target.device.hotpluggable:
            raise ScenarioError(path, where, f"{target.device.describe()} cannot be (un)plugged at run time",
                                "only nvme, usb-storage, usb-kbd and usb-tablet devices can")  # fmt: skip
    controllers = {e.device.id for e in devices if e.device.kind == "xhci"}
    for index, entry in enumerate(devices):
        controller = getattr(entry.device, "controller", None)
        if controller is not None and controller not in controllers:
            raise ScenarioError(path, f"devices[{index}].controller", f"names {controller!r}, not an xhci device",
                                "declare a [[devices]] kind = \"xhci\" with that id")  # fmt: skip


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


def _array(path: Path, data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise ScenarioError(path, key, "must be an array of tables", f"write each entry as [[{key}]]")
    return value


def _typed(path: Path, table: dict[str, Any], key: str, kind: Any, default: Any, prefix: str = "") -> Any:
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise ScenarioError(path, f"{prefix}{key}", f"is {type(value).__name__} {value!r}", f"give a {names}")
    return value


def _flag(path: Path, table: dict[str, Any], key: str, prefix: str = "") -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ScenarioError(path, f"{prefix}{key}", f"is {value!r}", "write true or false")
    return value


def _positive(path: Path, table: dict[str, Any], prefix: str, key: str) -> int | None:
    value = _typed(path, table, key, int, None, prefix=prefix)
    if value is not None and value < 1:
        raise ScenarioError(path, f"{prefix}{key}", f"is {value}", "give a whole number of at least 1")
    return value
