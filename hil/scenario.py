"""Scenarios: TOML files naming a guest, its machine, its devices and the steps to run once it has booted.

Loaded by name (the files shipped in hil/scenarios) or by path. Every mistake in a file is reported with
the file, the key and what to write instead, never a traceback.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hil.argtypes import MAX_SMP
from hil.devices.base import Device
from hil.devices.catalog import DeviceSpecError, device_from_table
from hil.devices.net import E1000
from hil.errors import UsageError
from hil.guest.profiles import DEFAULT_GUEST, profile_names
from hil.tokio.drivers import DriverSpecError, driver_named

NUMBER = (int, float)
# How messages name what a key holds and what it should hold (in TOML's words, not Python's).
HELD = {str: "text", int: "a whole number", float: "a number", bool: "a true/false", list: "a list", dict: "a table"}
WANTED = {str: "text in quotes", int: "a whole number", float: "a number", bool: "true or false",
          list: "a list [...]", dict: "a table {...}"}  # fmt: skip
MAX_TIMEOUT = 24 * 3600.0
SSH_PORT = 22


@dataclass(frozen=True)
class Param:
    kind: type | tuple[type, ...]
    default: Any = None
    required: bool = False
    help: str = ""
    check: str = ""  # a further check of the value: "regex", "port", "status", "names" (a list of strings)


# Each step kind: the key naming it (its value is the main argument) and the other keys it takes.
STEP_KINDS: dict[str, dict[str, Param]] = {
    "run": {
        "run": Param(str, required=True, help="the shell command"),
        "expect_status": Param(int, 0, help="exit status required (default 0)", check="status"),
        "expect_output": Param(str, help="a regular expression the output must match", check="regex"),
    },
    "console": {
        "console": Param(str, required=True, help="a regular expression to wait for on the console", check="regex")
    },
    "hotplug": {"hotplug": Param(str, required=True, help='the id of a device with plug = "hotplug"')},
    "unplug": {"unplug": Param(str, required=True, help="the id of a hot-pluggable device")},
    "check_device": {"check_device": Param(str, required=True, help="the id of a device the guest must show")},
    "probe": {
        "probe": Param(str, required=True, help='the probe to run: "uring"'),
        "device": Param(str, help="the id of the device the probe works on"),
        "args": Param(str, "", help="arguments for the probe"),
        "expect_cases": Param(list, help="case names that must pass (default: every case)", check="names"),
        "allow_fail": Param(list, [], help="case names allowed to fail", check="names"),
    },
    "console_probe": {
        "console_probe": Param(str, required=True, help="the probe whose output the guest prints by itself"),
        "expect_cases": Param(list, help="case names that must pass (default: every case)", check="names"),
        "allow_fail": Param(list, [], help="case names allowed to fail", check="names"),
        "unplug_on_request": Param(str, help="the id of a usb-storage the host unplugs when the probe prints "
                                   "'hil-request: unplug'"),
        "replug_on_request": Param(str, help="the same id: the host plugs it back on 'hil-request: replug'"),
    },
    "driver": {
        "driver": Param(str, required=True, help="a host-side driver of a guest program (tokio's examples)"),
        "settings": Param(dict, {}, help="the driver's settings that differ from its defaults"),
    },
    "host": {
        "host": Param(str, required=True, help='"send" (host -> guest port) or "receive" (guest -> host)'),
        "proto": Param(str, "tcp", help='"tcp" or "udp"'),
        "guest_port": Param(int, help="the guest port to reach (send)", check="port"),
        "payload": Param(str, "hil-payload", help="bytes to send"),
        "expect": Param(str, help="what must come back (send; default: the payload, an echo)"),
        "guest_command": Param(str, help="the guest command that sends (receive; {host_addr} {host_port}); "
                               "without it the guest sends by itself to the e1000's listener (listen = [...])"),
        "background": Param(bool, False, help="run alongside the steps after it (a guest that talks by itself, "
                            "like the initfs probe); its result comes when it ends"),
    },
}
COMMON_STEP_KEYS = {"name": Param(str), "timeout": Param(NUMBER, 30.0, help="seconds", check="seconds")}
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
    guest: str = DEFAULT_GUEST
    smp: int | None = None
    memory_mb: int | None = None
    append: str = ""
    snapshot: bool = False
    initfs_probe: str | None = None
    require_all_cpus: bool = False  # fail a run whose guest brought up fewer CPUs than it was given
    image_extras: tuple[str, ...] = ()  # the reference guest's image with these extras (tokio's examples)
    timeout_factor: float | None = None
    tags: tuple[str, ...] = ()
    # Programs whose faults the guest goes on after are known here (`nulld`, or `nulld:Page fault`).
    allow_faults: tuple[str, ...] = ()
    devices: tuple[DeviceEntry, ...] = ()
    steps: tuple[Step, ...] = field(default_factory=tuple)


class ScenarioError(UsageError):
    def __init__(self, source: Path | str, key: str, problem: str, fix: str) -> None:
        super().__init__(f"{source}: key '{key}': {problem}. Fix: {fix}")


def builtin_dir() -> Path:
    return Path(str(resources.files("hil") / "scenarios"))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.toml"))


def scenarios_tagged(tags: Sequence[str]) -> list[str]:
    """The built-in scenarios with any of these tags; an unknown tag is a usage error naming the known ones."""
    tagged = {name: set(load_scenario(name).tags) for name in builtin_names()}
    known = set().union(*tagged.values())
    unknown = sorted(set(tags) - known)
    if unknown:
        raise UsageError(f"--tag {','.join(unknown)}: no built-in scenario has it. Fix: use one of "
                         f"{', '.join(sorted(known))} (see `hil list`)")  # fmt: skip
    return [name for name, have in tagged.items() if have & set(tags)]


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by built-in name (`boot`) or by a path to a .toml file.

    A bare name is a built-in one even when the current folder holds something of that name; a path says
    so with a slash or a .toml suffix.
    """
    path = Path(name_or_path)
    builtin = builtin_dir() / f"{name_or_path}.toml"
    if path.suffix != ".toml" and "/" not in name_or_path:
        if builtin.is_file():
            return parse_scenario(builtin)
        if not path.is_file():
            known = ", ".join(builtin_names())
            raise UsageError(f"unknown scenario {name_or_path!r}; built-in scenarios: {known} (or give a .toml path)")
    if not path.is_file():
        problem = "is a folder, not a scenario file" if path.is_dir() else "does not exist"
        raise UsageError(f"scenario file {path} {problem}")
    return parse_scenario(path)


def parse_scenario(path: Path) -> Scenario:
    """Scenarios are rebuilt from the file each time: devices hold per-run state (overlays, ports)."""
    data = read_toml(path)
    if not data:
        raise UsageError(f"{path}: the file is empty. Fix: write a scenario (see `hil list` and hil/scenarios/)")
    _only_keys(path, "", data, {"name", "description", "guest", "tags", "machine", "budgets", "devices", "steps",
                                "allow_faults"})  # fmt: skip
    machine = _table(path, data, "machine")
    _only_keys(path, "machine.", machine, {"smp", "memory", "append", "snapshot", "initfs_probe", "image_extras",
                                           "require_all_cpus"})  # fmt: skip
    budgets = _table(path, data, "budgets")
    _only_keys(path, "budgets.", budgets, {"timeout_factor"})
    devices = _parse_devices(path, _array(path, data, "devices"))
    steps = tuple(_parse_step(path, i, raw) for i, raw in enumerate(_array(path, data, "steps")))
    _check_references(path, devices, steps)
    guest = _typed(path, data, "guest", str, DEFAULT_GUEST)
    if guest not in profile_names():
        known = ", ".join(profile_names())
        raise ScenarioError(path, "guest", f"is {guest!r}, not a known guest", f"use one of {known}")
    factor = _typed(path, budgets, "timeout_factor", NUMBER, None, prefix="budgets.")
    if factor is not None:
        _seconds(path, "budgets.timeout_factor", factor, "a factor", upper=1000.0)
    smp = _positive(path, machine, "machine.", "smp", upper=MAX_SMP)
    memory = _positive(path, machine, "machine.", "memory")
    if not steps:
        raise ScenarioError(path, "steps", "the scenario has no steps",
                            'add [[steps]] tables, e.g. run = "uname -a" (a boot alone: run = "true")')  # fmt: skip
    return Scenario(
        name=_typed(path, data, "name", str, path.stem),
        description=_typed(path, data, "description", str, ""),
        source=path,
        guest=guest,
        smp=smp,
        memory_mb=memory,
        append=_typed(path, machine, "append", str, "", prefix="machine."),
        snapshot=_flag(path, machine, "snapshot", prefix="machine."),
        require_all_cpus=_flag(path, machine, "require_all_cpus", prefix="machine."),
        initfs_probe=_typed(path, machine, "initfs_probe", str, None, prefix="machine."),
        image_extras=tuple(_names(path, "machine.image_extras", _typed(path, machine, "image_extras", list, [],
                                                                       prefix="machine."))),
        timeout_factor=factor,
        tags=tuple(_names(path, "tags", _typed(path, data, "tags", list, []))),
        allow_faults=tuple(_names(path, "allow_faults", _typed(path, data, "allow_faults", list, []))),
        devices=devices,
        steps=steps,
    )


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file hil reads (scenario, suite), or a UsageError saying why it cannot."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"{path}: cannot read the file: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(f"{path}: not a text file (byte 0x{raw[err.start]:02x} at offset {err.start} is not UTF-8). "
                         "Fix: give a TOML file") from None  # fmt: skip
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{path}: not valid TOML: {err}. Fix: correct the syntax there (https://toml.io)") from None


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
        if key in raw and param.check:
            _check_value(path, f"{where}.{key}", param.check, params[key])
    _check_choices(path, where, kind, params)
    timeout = float(params.pop("timeout"))
    name = params.pop("name") or f"{kind} {params[kind]}"[:60]
    return Step(name=name, kind=kind, params=params, timeout=timeout)


def _check_value(path: Path, key: str, check: str, value: Any) -> None:
    """The checks a type alone does not make: every one of them would otherwise fail only after a boot."""
    if check == "regex":
        try:
            re.compile(value)
        except re.error as err:
            raise ScenarioError(path, key, f"is not a regular expression ({err})",
                                "fix the pattern (Python `re` syntax; escape ( [ { * + ? with a backslash)") from None
    elif check == "seconds":
        _seconds(path, key, value, "seconds", upper=MAX_TIMEOUT)
    elif check == "port" and not 0 < value < 65536:
        raise ScenarioError(path, key, f"is {value}", "give a port number from 1 to 65535")
    elif check == "status" and not 0 <= value <= 255:
        raise ScenarioError(path, key, f"is {value}, which no command can exit with", "give a status from 0 to 255")
    elif check == "names":
        _names(path, key, value)


def _seconds(path: Path, key: str, value: float, what: str, upper: float) -> None:
    if not (math.isfinite(value) and 0 < value <= upper):
        raise ScenarioError(path, key, f"is {value}", f"give {what} greater than 0 and at most {upper:g}")


def _names(path: Path, key: str, values: list[Any]) -> list[str]:
    for value in values:
        if not isinstance(value, str):
            raise ScenarioError(path, key, f"holds {value!r}", 'give a list of names in quotes, e.g. ["a", "b"]')
    return values


def _check_choices(path: Path, where: str, kind: str, params: dict[str, Any]) -> None:
    if kind == "driver":
        try:
            driver_named(params["driver"], params["settings"])
        except DriverSpecError as err:
            raise ScenarioError(path, f"{where}.{err.key}", err.problem, err.fix) from None
    if kind == "probe" and params["probe"] not in PROBES:
        raise ScenarioError(path, f"{where}.probe", f"is {params['probe']!r}", f"use one of {', '.join(PROBES)}")
    if kind != "host":
        return
    if params["host"] not in HOST_MODES or params["proto"] not in ("tcp", "udp"):
        raise ScenarioError(path, f"{where}.host", f"is {params['host']!r} over {params['proto']!r}",
                            'use host = "send" or "receive" and proto = "tcp" or "udp"')  # fmt: skip
    if params["host"] == "send" and params["guest_port"] is None:
        raise ScenarioError(path, f"{where}.guest_port", "is missing", "add guest_port = ... for host = 'send'")
    if params["background"] and params["guest_command"] is not None:
        raise ScenarioError(path, f"{where}.background", "cannot type a guest_command while other steps run",
                            "drop background, or let the guest send by itself (no guest_command)")  # fmt: skip


def _check_references(path: Path, devices: tuple[DeviceEntry, ...], steps: tuple[Step, ...]) -> None:
    """Steps name declared devices, plug and unplug them in an order that can work, and reach forwarded
    ports; USB devices hang on a declared controller."""
    by_id = {e.device.id: e for e in devices}
    plugged = {e.device.id for e in devices if e.at_boot}
    for index, step in enumerate(steps):
        key = step.kind if step.kind in ("hotplug", "unplug", "check_device") else "device"
        if key in step.params and step[key] is not None:
            entry = _referenced(path, f"steps[{index}].{key}", by_id, step[key])
            if step.kind in ("hotplug", "unplug"):
                _check_plug(path, f"steps[{index}].{key}", step.kind, entry, plugged)
        if step.kind == "console_probe":
            _check_requests(path, f"steps[{index}]", by_id, step, plugged)
        if step.kind == "host" and step["host"] == "send":
            _check_forwarded(path, f"steps[{index}].guest_port", devices, step["proto"], step["guest_port"])
        if step.kind == "host" and step["host"] == "receive" and step["guest_command"] is None:
            _check_listener(path, f"steps[{index}].guest_command", devices, step["proto"])
    controllers = {e.device.id for e in devices if e.device.kind == "xhci"}
    for index, entry in enumerate(devices):
        controller = getattr(entry.device, "controller", None)
        if controller is not None and controller not in controllers:
            raise ScenarioError(path, f"devices[{index}].controller", f"names {controller!r}, not an xhci device",
                                "declare a [[devices]] kind = \"xhci\" with that id")  # fmt: skip


def _check_requests(path: Path, where: str, by_id: dict[str, DeviceEntry], step: Step, plugged: set[str]) -> None:
    """A console_probe's unplug_on_request / replug_on_request: a plugged usb-storage, unplugged, then the same
    one plugged back."""
    unplug, replug = step["unplug_on_request"], step["replug_on_request"]
    if unplug is not None:
        entry = _referenced(path, f"{where}.unplug_on_request", by_id, unplug)
        if entry.device.kind != "usb-storage":
            raise ScenarioError(path, f"{where}.unplug_on_request", f"names {entry.device.describe()}",
                                "name a usb-storage device: the probe's xhci_unplug watches its port")  # fmt: skip
        _check_plug(path, f"{where}.unplug_on_request", "unplug", entry, plugged)
    if replug is not None:
        if unplug is None:
            raise ScenarioError(path, f"{where}.replug_on_request", "comes without unplug_on_request",
                                f"add unplug_on_request = {replug!r}: the probe plugs back what it unplugged")
        if replug != unplug:
            raise ScenarioError(path, f"{where}.replug_on_request",
                                f"names {replug!r}, but unplug_on_request names {unplug!r}",
                                "give both the same usb-storage id: the probe plugs back what it unplugged")
        _check_plug(path, f"{where}.replug_on_request", "hotplug", by_id[replug], plugged)


def _referenced(path: Path, where: str, by_id: dict[str, DeviceEntry], device_id: str) -> DeviceEntry:
    entry = by_id.get(device_id)
    if entry is None:
        known = ", ".join(by_id) or "none declared"
        raise ScenarioError(path, where, f"names unknown device {device_id!r}", f"use a device id ({known})")
    return entry


def _check_plug(path: Path, where: str, kind: str, entry: DeviceEntry, plugged: set[str]) -> None:
    device = entry.device
    if not device.hotpluggable:
        raise ScenarioError(path, where, f"{device.describe()} cannot be (un)plugged at run time",
                            "only nvme, usb-storage, usb-kbd and usb-tablet devices can")  # fmt: skip
    if kind == "hotplug" and device.id in plugged:
        if entry.at_boot:
            raise ScenarioError(path, where, f"{device.describe()} is present from boot",
                                'declare it with plug = "hotplug", or unplug it first')  # fmt: skip
        raise ScenarioError(path, where, f"{device.describe()} is added by an earlier step and not removed",
                            "add an unplug step for it between the two")  # fmt: skip
    if kind == "unplug" and device.id not in plugged:
        raise ScenarioError(path, where, f"{device.describe()} is not plugged in at this point",
                            "add a hotplug step for it before this one")  # fmt: skip
    (plugged.add if kind == "hotplug" else plugged.discard)(device.id)


def _check_forwarded(path: Path, where: str, devices: tuple[DeviceEntry, ...], proto: str, port: int) -> None:
    if proto == "tcp" and port == SSH_PORT:  # every guest gets its SSH port forwarded
        return
    forwarded = [(f.proto, f.guest_port) for e in devices if isinstance(e.device, E1000) for f in e.device.forwards]
    if (proto, port) not in forwarded:
        raise ScenarioError(path, where, f"{proto} port {port} is not forwarded to the guest",
                            f'add forwards = ["{proto}:{port}"] to an e1000 device')  # fmt: skip


def _check_listener(path: Path, where: str, devices: tuple[DeviceEntry, ...], proto: str) -> None:
    if not any(isinstance(e.device, E1000) and proto in e.device.listeners for e in devices):
        raise ScenarioError(path, where, f"is missing and no e1000 device has a {proto} host listener",
                            f'add guest_command = ..., or listen = ["{proto}"] to an e1000 device')  # fmt: skip


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
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        wanted = "a number" if kind == NUMBER else WANTED[kind]
        held = HELD.get(type(value), type(value).__name__)
        raise ScenarioError(path, f"{prefix}{key}", f"is {value!r} ({held})", f"give {wanted}")
    return value


def _flag(path: Path, table: dict[str, Any], key: str, prefix: str = "") -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ScenarioError(path, f"{prefix}{key}", f"is {value!r}", "write true or false")
    return value


def _positive(path: Path, table: dict[str, Any], prefix: str, key: str, upper: int | None = None) -> int | None:
    value = _typed(path, table, key, int, None, prefix=prefix)
    if value is not None and (value < 1 or (upper is not None and value > upper)):
        most = f" and at most {upper}" if upper is not None else ""
        raise ScenarioError(path, f"{prefix}{key}", f"is {value}", f"give a whole number of at least 1{most}")
    return value
