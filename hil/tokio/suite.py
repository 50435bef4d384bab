"""tokio's examples as an ordinary run set: one generated scenario per example driver, times the smp values.

`hil run tokio-examples --smp 1,2,4 [--only echo,chat]` builds (or finds) the reference guest with tokio's
examples, writes one scenario per driver (a `driver` step, the tokio image, an e1000 forwarding every
driver's guest ports, so each smp value shares one snapshot), and hands the cells to the run-set runner:
the same processes, verdicts, reports and JUnit as any other run set. Examples that cannot run on a Unix
guest, or that were not built here, are listed as not run with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from hil.errors import UsageError
from hil.image.reference import build_reference
from hil.paths import private_dir, state_dir
from hil.runset import RunSetPlan, expand_cells, numbered
from hil.store import atomic_write
from hil.tokio.drivers import DRIVERS, DRIVERS_BY_NAME, Driver, forwards, settings_of
from hil.tokio.examples import EXAMPLES_BY_NAME

SUITE_NAME = "tokio-examples"
SUITE_DESCRIPTION = "tokio's examples driven from the host, one run per example and smp value (1, 2, 4)"
DEFAULT_SMP = (1, 2, 4)
DEFAULT_JOBS = 2
MEMORY_MB = 1024
TOKIO_EXTRA = "tokio"


@dataclass(frozen=True)
class TokioSuite:
    plan: RunSetPlan
    drivers: tuple[Driver, ...]  # those with a cell, in the order asked for
    image_root: Path
    image_info: dict


def tokio_plan(
    smp: Sequence[int] | None = None,
    only: Sequence[str] | None = None,
    drivers: Sequence[Driver] | None = None,
    console: Console | None = None,
) -> TokioSuite:
    """The run set for tokio's examples; `drivers` replaces the built-in ones (tests break one on purpose),
    `only` picks drivers or examples by name."""
    chosen, skipped = choose(only, drivers)
    image = build_reference(extras=(TOKIO_EXTRA,), console=console or Console(stderr=True))
    tokio = image.manifest["extras"][TOKIO_EXTRA]
    runnable = [driver for driver in chosen if all(name in tokio["built"] for name in driver.needs)]
    skipped |= {d.name: not_built_reason(d, tokio["not_built"]) for d in chosen if d not in runnable}
    ports = forwards(DRIVERS if drivers is None else list(drivers))
    scenarios = [str(write_scenario(driver, ports)) for driver in runnable]
    plan = RunSetPlan(
        name=SUITE_NAME,
        cells=tuple(numbered(expand_cells(scenarios, list(dict.fromkeys(smp or DEFAULT_SMP))))),
        jobs=DEFAULT_JOBS,
        # The image built here: every cell boots it without resolving it again.
        common_args=("--image", str(image.root)),
        skipped=tuple(skipped.items()),
    )
    return TokioSuite(plan, tuple(runnable), image.root, {"key": image.key, **tokio})


def choose(only: Sequence[str] | None, drivers: Sequence[Driver] | None) -> tuple[list[Driver], dict[str, str]]:
    """The drivers to run, and the asked-for examples that cannot run on a Unix guest (with why)."""
    available = {driver.name: driver for driver in (drivers or DRIVERS)}
    if only is None:
        unix_only = {} if drivers else {e.name: e.skip_reason for e in EXAMPLES_BY_NAME.values() if not e.applies}
        return list(available.values()), unix_only
    chosen: list[Driver] = []
    skipped: dict[str, str] = {}
    for name in only:
        # A driver's name, or an example's: `connect` stands for both connect-tcp and connect-udp.
        matching = [available[name]] if name in available else [d for d in available.values() if d.example == name]
        if matching:
            chosen += [driver for driver in matching if driver not in chosen]
        elif name in EXAMPLES_BY_NAME and not EXAMPLES_BY_NAME[name].applies:
            skipped[name] = EXAMPLES_BY_NAME[name].skip_reason
        else:
            raise UsageError(f"unknown tokio example {name!r}; known: {', '.join(sorted(available))}")
    return chosen, skipped


def not_built_reason(driver: Driver, not_built: dict[str, str]) -> str:
    missing = [name for name in driver.needs if name in not_built] or list(driver.needs)
    return "; ".join(f"{name} not built: {not_built.get(name, 'missing from the image')}" for name in missing)


def write_scenario(driver: Driver, ports: Sequence[tuple[str, int]]) -> Path:
    """The scenario of one driver; named by its content, so a changed driver never reuses another's file."""
    text = scenario_text(driver, ports)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = private_dir(state_dir() / "generated" / SUITE_NAME) / f"{driver.name}-{digest}.toml"
    if not path.is_file():
        atomic_write(path, text.encode())
    return path


def scenario_text(driver: Driver, ports: Sequence[tuple[str, int]]) -> str:
    example = EXAMPLES_BY_NAME[driver.example]
    settings = settings_of(driver) if driver.name in DRIVERS_BY_NAME else {}
    lines = [
        f"# Generated by hil for `hil run {SUITE_NAME}`: tokio's {example.name} example, driven from the host.",
        f'name = "{driver.name}"',
        f'description = "tokio example {example.name}, driven from the host"',
        'tags = ["tokio"]',
        "",
        "[machine]",
        f"memory = {MEMORY_MB}",
        "snapshot = true",
        f'image_extras = ["{TOKIO_EXTRA}"]',
        "",
        "[[devices]]",
        'kind = "e1000"',
        'id = "net0"',
        "forwards = [" + ", ".join(f'"{proto}:{port}"' for proto, port in ports) + "]",
        "",
        "[[steps]]",
        f'name = "{driver.name}"',
        f'driver = "{driver.name}"',
    ]
    if settings:
        lines.append("settings = { " + ", ".join(f"{key} = {_toml(value)}" for key, value in settings.items()) + " }")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)
