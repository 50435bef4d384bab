"""pytest plugin: booted guests as fixtures, hil's TOML scenarios as test items, isolated under pytest-xdist.

Fixtures:
- `hil_session`: a GuestSession booted to a shell for the test's needs (guest, machine, devices). Tests with
  the same needs share one boot per worker, in order; `@pytest.mark.hil_fresh` or snapshots (`--hil-snapshot`,
  `@pytest.mark.hil_snapshot`) give a test its own guest.
  Its methods: `run(cmd, timeout=30) -> CommandResult` (.status, .output, .ok) on the serial console;
  `hotplug(device_id)`, `unplug(device_id, timeout=30)` and `check_device(device_id, timeout=30) -> DeviceSeen`
  (.ok, .description) for devices from `hil_devices`; `ssh()`; attributes `run_dir`, `ssh_port`, `machine`.
- `hil_console` (the serial console: `run`, `expect`, `send`), `hil_qmp` (the QMP session: `execute`, `hmp`,
  `wait_event`, the `events` list), `hil_ssh` (`run(cmd) -> SshResult` with .status/.stdout/.stderr/.ok,
  `put(bytes | Path, remote, mode=0o644)`, `get(remote) -> bytes`; skipped where the guest has no sshd).

A failing test's report has a `hil guest` section: the run folder and the guest's last console lines.

Markers: `hil_guest("reference")`, `hil_devices("nvme:nvme0", "xhci:xhci0", "usb-storage:usb0,controller=xhci0")`
(or dicts written like scenario [[devices]] tables), `hil_machine(smp=4, memory=2048)`, `hil_fresh`,
`hil_snapshot`.

`pytest --hil-scenarios` collects hil's built-in scenarios (or the .toml paths given) as items; each runs
through `run_scenario` and passes on verdict `pass`, else fails with the reason and the guest's last lines.

Under pytest-xdist every worker keeps its run folders under `<artifacts>/<worker id>/`; sockets live in
private temporary folders and forwarded ports are picked free per boot, so workers share nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from hil.boot import Booter, BootRequest, end_session
from hil.devices.catalog import DeviceSpecError, device_from_table
from hil.guest.profiles import DEFAULT_GUEST, GuestOptions
from hil.judge import STOPS, Judge
from hil.paths import new_run_dir, state_dir
from hil.qemu.qmp import QmpSession
from hil.reports.facts import last_console_lines
from hil.reports.run_report import write_report
from hil.results import RunResult, RunSetResult, Verdict
from hil.runner import RunOptions, run_scenario
from hil.scenario import builtin_dir, load_scenario
from hil.session import GuestSession, PlannedDevice
from hil.triage.watchdog import WatchedConsole

if TYPE_CHECKING:
    from hil.guest.ssh import GuestSsh

TOML_SCENARIO_KEYS = {"steps", "guest", "devices"}
MARKERS = {
    "hil_guest(name)": "the test needs this guest profile (skipped when --hil-guest names another)",
    "hil_devices(*specs)": 'devices the guest boots with: "kind:id[,key=value...]" strings or device tables',
    "hil_machine(smp=None, memory=None)": "machine size for this test's guest",
    "hil_fresh": "the test gets a guest no other test has used",
    "hil_snapshot": "start the test's guest from a snapshot of the booted machine (each test gets its own)",
}


# --- options and configuration ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hil guests in QEMU")
    group.addoption("--hil-image", type=Path, help="the guest image to boot (default: the guest's own)")
    group.addoption("--hil-guest", help="guest profile for tests that do not name one (default: reference)")
    group.addoption("--hil-smp", type=int, help="virtual CPUs for tests that do not say")
    group.addoption("--hil-accel", default="auto", choices=("auto", "kvm", "tcg"), help="accelerator")
    group.addoption("--hil-artifacts", type=Path, help="where run folders go (default: hil's state dir)")
    group.addoption("--hil-snapshot", action="store_true", help="start every guest from a snapshot")
    group.addoption(
        "--hil-scenarios",
        action="store_true",
        help="collect hil's TOML scenarios (the built-in ones unless .toml paths are given)",
    )


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if config.getoption("hil_scenarios") and config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = [*config.args, str(builtin_dir())]  # the built-in scenarios besides the project's tests


def worker_id(config: pytest.Config) -> str:
    """xdist's worker id (gw0, gw1, ...), or "main" without xdist."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput["workerid"] if workerinput else "main"


def artifacts_dir(config: pytest.Config) -> Path:
    base = config.getoption("hil_artifacts") or state_dir() / "pytest"
    return Path(base) / worker_id(config)


# --- what a test needs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Needs:
    """Everything that makes two tests' guests different; equal needs can share a boot."""

    guest: str
    smp: int | None
    memory: int | None
    devices: tuple[str, ...]  # device tables as canonical JSON
    snapshot: bool


def needs_of(item: pytest.Item) -> Needs:
    config = item.config
    wanted = config.getoption("hil_guest")
    marker = item.get_closest_marker("hil_guest")
    guest = marker.args[0] if marker else wanted or DEFAULT_GUEST
    if wanted and marker and guest != wanted:
        pytest.skip(f"needs guest {guest!r}, this run is for {wanted!r}")
    machine = item.get_closest_marker("hil_machine")
    machine_kwargs = machine.kwargs if machine else {}
    devices = item.get_closest_marker("hil_devices")
    tables = [device_table(spec) for spec in (devices.args if devices else ())]
    for index, table in enumerate(tables):  # a bad spec fails the test in one line, before any run folder
        try:
            device_from_table(table, index)
        except DeviceSpecError as err:
            pytest.fail(f"hil_devices({devices.args[index]!r}): {err}", pytrace=False)
    return Needs(
        guest=guest,
        smp=machine_kwargs.get("smp") or config.getoption("hil_smp"),
        memory=machine_kwargs.get("memory"),
        devices=tuple(json.dumps(table, sort_keys=True) for table in tables),
        snapshot=bool(config.getoption("hil_snapshot") or item.get_closest_marker("hil_snapshot")),
    )


def device_table(spec: str | dict[str, Any]) -> dict[str, Any]:
    """ "nvme:nvme0,size_mib=32" -> {"kind": "nvme", "id": "nvme0", "size_mib": 32}; tables pass through."""
    if isinstance(spec, dict):
        return dict(spec)
    head, *options = spec.split(",")
    kind, _, device_id = head.partition(":")
    table: dict[str, Any] = {"kind": kind.strip(), "id": (device_id or kind).strip()}
    for option in options:
        key, _, value = option.partition("=")
        table[key.strip()] = int(value) if value.strip().isdigit() else value.strip()
    return table


# --- booted guests ----------------------------------------------------------------------------------------


class SessionPool:
    """At most one booted guest per worker at a time, reused while tests need the same one."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: GuestSession | None = None
        self.needs: Needs | None = None
        self.ssh: GuestSsh | None = None
        self.failed: dict[Needs, str] = {}
        self.booter = Booter()  # one accelerator decision per worker

    def acquire(self, needs: Needs, label: str, fresh: bool) -> GuestSession:
        if needs in self.failed:
            pytest.fail(
                f"the guest for these needs did not boot earlier in this worker: {self.failed[needs]}", pytrace=False
            )
        if self.session is not None and (fresh or needs != self.needs or not self._healthy()):
            self.release()
        if self.session is None:
            self.session = self._boot(needs, label)
            self.needs = needs
        return self.session

    def release(self) -> None:
        if self.ssh is not None:
            self.ssh.close()
            self.ssh = None
        if self.session is not None:
            with contextlib.suppress(Exception):
                self.session.close()
        self.session, self.needs = None, None

    def ssh_client(self) -> GuestSsh:
        if self.ssh is None:
            self.ssh = self.session.ssh()
        return self.ssh

    def _healthy(self) -> bool:
        """A shared guest is reused only if QEMU runs and its shell still answers."""
        if not self.session.machine.is_running():
            return False
        try:
            self.session.console.resync(10.0)
        except Exception:
            return False
        return True

    def _boot(self, needs: Needs, label: str) -> GuestSession:
        """Boot through hil's one boot path; a guest that does not come up is judged like a run (verdict,
        reason, triage, report.json in its folder) and fails the test with that verdict."""
        run_dir = new_run_dir(_safe(label), parent=artifacts_dir(self.config))
        request = BootRequest(
            guest=needs.guest,
            options=GuestOptions(image=self.config.getoption("hil_image"), smp=needs.smp, memory_mb=needs.memory),
            devices=tuple(self._devices(needs)),
            accel=self.config.getoption("hil_accel"),
            snapshot=needs.snapshot,
        )
        judge = Judge(RunResult(label, needs.guest, run_dir))
        try:
            return self.booter.boot(request, judge)
        except BaseException as err:
            judge.ended_by(err)  # a no-op for what the boot judged already
            if judge.session is not None:
                end_session(judge.session, judge.result)
            write_report(judge.result)
            if isinstance(err, STOPS):
                raise
        result = judge.result
        self.failed[needs] = f"verdict {result.verdict}: {result.reason} (run folder {run_dir})"
        pytest.fail(f"the guest did not boot: {self.failed[needs]}", pytrace=False)

    def _devices(self, needs: Needs) -> list[PlannedDevice]:
        """Device objects are built anew for every boot: they hold per-run overlays and ports (the specs
        were checked in needs_of)."""
        return [PlannedDevice(*device_from_table(json.loads(text), index)) for index, text in enumerate(needs.devices)]


@pytest.fixture(scope="session")
def _hil_pool(request: pytest.FixtureRequest) -> Iterator[SessionPool]:
    """Internal: this worker's booted guest, shared by tests with equal needs (not for tests to use)."""
    pool = SessionPool(request.config)
    yield pool
    pool.release()


@pytest.fixture
def hil_session(request: pytest.FixtureRequest, _hil_pool: SessionPool) -> Iterator[GuestSession]:
    """A guest booted to a shell for this test's markers (hil_guest, hil_devices, hil_machine), shared with
    the next tests of equal needs unless hil_fresh/hil_snapshot. Methods: run(cmd) -> CommandResult,
    hotplug(id), unplug(id), check_device(id) -> DeviceSeen, ssh(); run_dir holds its artifacts."""
    needs = needs_of(request.node)
    fresh = needs.snapshot or request.node.get_closest_marker("hil_fresh") is not None
    # A shared guest's folder is named after what it is, not after whichever test happened to boot it.
    label = request.node.name if fresh else shared_label(needs)
    session = _hil_pool.acquire(needs, label, fresh)
    request.node.user_properties.append(("hil_run_dir", str(session.run_dir)))
    yield session
    if fresh:
        _hil_pool.release()


def shared_label(needs: Needs) -> str:
    digest = hashlib.sha256(repr(needs).encode()).hexdigest()[:8]
    smp = f"-smp{needs.smp}" if needs.smp else ""
    return f"shared-{needs.guest}{smp}-{digest}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that had a guest says where its run folder is and what the guest printed last."""
    report = yield
    session = getattr(item, "funcargs", {}).get("hil_session")
    if report.failed and isinstance(session, GuestSession):
        tail = session.console.recent_lines(20)
        lines = [f"run folder: {session.run_dir}", "last console lines:", *(f"  | {line}" for line in tail)]
        report.sections.append(("hil guest", "\n".join(lines)))
    return report


@pytest.fixture
def hil_console(hil_session: GuestSession) -> WatchedConsole:
    """The guest's serial console: `run(cmd)` -> CommandResult, `expect([...], timeout)`, `send(text)`."""
    return hil_session.console


@pytest.fixture
def hil_qmp(hil_session: GuestSession) -> QmpSession:
    """The QMP session of the guest's QEMU: `execute(command, arguments)`, `hmp(line)`, `wait_event(name,
    timeout)`, and `events`, the list of every event so far (a property)."""
    return hil_session.machine.qmp


@pytest.fixture
def hil_ssh(hil_session: GuestSession, _hil_pool: SessionPool) -> GuestSsh:
    """SSH into the guest (skips when its profile has no SSH server): run(cmd, timeout=60) -> SshResult
    (.status, .stdout, .stderr, .ok), put(bytes | Path, remote, mode=0o644), get(remote) -> bytes."""
    if hil_session.profile.ssh_access(hil_session.options) is None:
        pytest.skip(f"guest {hil_session.profile.name} has no SSH server")
    return _hil_pool.ssh_client()


# --- TOML scenarios as test items ---------------------------------------------------------------------------


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".toml" or not parent.config.getoption("hil_scenarios"):
        return None
    try:
        data = tomllib.loads(file_path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if not TOML_SCENARIO_KEYS & set(data):  # pyproject.toml, suites and other TOML files are not scenarios
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class ScenarioFailed(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class ScenarioItem(pytest.Item):
    """One scenario file, run by hil's runner; the test passes when the verdict is pass."""

    def runtest(self) -> None:
        config = self.config
        options = RunOptions(
            guest=config.getoption("hil_guest"),
            image=config.getoption("hil_image"),
            smp=config.getoption("hil_smp"),
            accel=config.getoption("hil_accel"),
            report_dir=new_run_dir(_safe(self.name), parent=artifacts_dir(config)),
            snapshot=True if config.getoption("hil_snapshot") else None,
        )
        result = run_scenario(load_scenario(str(self.path)), options)
        self.user_properties += [("hil_verdict", str(result.verdict)), ("hil_run_dir", str(result.run_dir))]
        if result.verdict != Verdict.PASS:
            raise ScenarioFailed(_failure_text(result.run_dir))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return excinfo.value.text
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"hil scenario {self.name}"


def _failure_text(run_dir: Path) -> str:
    cell = RunSetResult.from_run_dirs([run_dir]).cells[0]
    lines = [f"verdict {cell.verdict}: {cell.reason}", f"run folder: {run_dir}", "last console lines:"]
    return "\n".join([*lines, *("  | " + line for line in last_console_lines(cell, 25))])


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label)[:48].strip("-") or "test"
