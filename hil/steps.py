"""Running scenario steps against a guest session; each gives a StepResult (pass, fail or hang).

Step kinds: run a command, wait for a console pattern, hot-add or remove a device, check the guest sees a
device, run a probe (every case becomes a result with its metrics), and talk to a guest port from the host.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from hil import netio
from hil.devices.net import E1000, GUEST_HOST_ADDRESS
from hil.guest.console import CommandTimeout, ConsoleClosed
from hil.initfs_probe.spec import HOST_REQUEST_PREFIX, HOST_REQUESTS
from hil.paths import private_dir
from hil.probes.ktap import CaseResult, ProbeParser, ProbeReport, parse_text
from hil.qemu.qmp import QmpCommandError
from hil.results import CaseStatus, StepResult, StepStatus
from hil.scenario import Step
from hil.session import GuestSession
from hil.store import atomic_write
from hil.tokio.drivers import DRIVER_DIR, DriverContext, driver_named
from hil.tokio.guest import DriverFailure, DriverLog, GuestHang, GuestJobs

OUTPUT_KEPT = 8000  # characters of a step's output kept in report.json (the tail)
STEP_OUTPUT_DIR = "steps"


def run_step(
    session: GuestSession,
    step: Step,
    *,
    on_hang: Callable[[StepResult], None] | None = None,
    recover: bool = True,
) -> StepResult:
    """Run one step. A hang calls `on_hang` (triage) first, then, with `recover`, brings the shell back
    (without it the guest stays as it hung, for the caller's triage)."""
    started = time.monotonic()
    session.console.activity = f"step '{step.name}'"
    timed_out = False
    try:
        result = STEP_RUNNERS[step.kind](session, step)
    except CommandTimeout as err:
        # Output still flowing at the end is a command slower than its timeout, not a stuck guest: fail.
        status = StepStatus.FAIL if err.still_printing else StepStatus.HANG
        reason = f"{err} ({err.still_printing})" if err.still_printing else str(err)
        result = StepResult(step.name, step.kind, status, output=err.output, reason=reason)
        timed_out = True
    except QmpCommandError as err:
        result = StepResult(step.name, step.kind, StepStatus.FAIL, reason=str(err))
    result.seconds = round(time.monotonic() - started, 3)
    _keep_output(session, result)
    if result.status == StepStatus.HANG and on_hang is not None:
        on_hang(result)  # before the resync below types into the hung guest
    if timed_out and recover:
        session.console.resync()
    return result


def _keep_output(session: GuestSession, result: StepResult) -> None:
    """report.json keeps the tail of a long output; the whole of it goes to a file in the run folder."""
    if len(result.output) <= OUTPUT_KEPT:
        return
    folder = private_dir(session.run_dir / STEP_OUTPUT_DIR)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", result.name)[:40].strip("-") or result.kind
    path = folder / f"{len(list(folder.iterdir())) + 1:02d}-{slug}.out"
    atomic_write(path, result.output.encode(errors="replace"))
    result.output_file = str(path.relative_to(session.run_dir))
    result.output = result.output[-OUTPUT_KEPT:]


def _run(session: GuestSession, step: Step) -> StepResult:
    done = session.run(step["run"], step.timeout)
    result = StepResult(step.name, step.kind, StepStatus.PASS, exit_status=done.status, output=done.output)
    expect_status, expect_output = step["expect_status"], step["expect_output"]
    if expect_status is not None and done.status != expect_status:
        result.status, result.reason = StepStatus.FAIL, f"exit status {done.status}, expected {expect_status}"
    elif expect_output is not None and not re.search(expect_output, done.output, re.MULTILINE):
        result.status, result.reason = StepStatus.FAIL, f"output does not match /{expect_output}/"
    return result


def _console(session: GuestSession, step: Step) -> StepResult:
    try:
        _, match = session.console.expect([re.compile(step["console"], re.MULTILINE)], step.timeout * session.factor)
    except TimeoutError:
        lines = session.console.recent_lines(10)
        return StepResult(
            step.name, step.kind, StepStatus.FAIL, output="\n".join(lines), reason=f"/{step['console']}/ not seen"
        )
    return StepResult(step.name, step.kind, StepStatus.PASS, output=match.group(0))


def _hotplug(session: GuestSession, step: Step) -> StepResult:
    session.hotplug(step["hotplug"])
    return StepResult(
        step.name, step.kind, StepStatus.PASS, reason=f"{session.device(step['hotplug']).describe()} added"
    )


def _unplug(session: GuestSession, step: Step) -> StepResult:
    try:
        session.unplug(step["unplug"], step.timeout)
    except TimeoutError:
        device = session.device(step["unplug"]).describe()
        return StepResult(
            step.name, step.kind, StepStatus.FAIL, reason=f"{device}: no DEVICE_DELETED (the guest kept it)"
        )
    return StepResult(
        step.name, step.kind, StepStatus.PASS, reason=f"{session.device(step['unplug']).describe()} removed"
    )


def _check_device(session: GuestSession, step: Step) -> StepResult:
    device = session.device(step["check_device"])
    seen = session.check_device(device.id, step.timeout)
    if seen.ok:
        return StepResult(step.name, step.kind, StepStatus.PASS, output=seen.evidence, reason=seen.description)
    reason = f"the guest does not show {device.describe()} ({seen.description})"
    return StepResult(step.name, step.kind, StepStatus.FAIL, output=seen.evidence, reason=reason)


def _probe(session: GuestSession, step: Step) -> StepResult:
    device = session.device(step["device"]) if step["device"] else None
    command = session.profile.probe_command(step["probe"], device, step["args"])
    done = session.run(command, step.timeout)
    result = _probe_result(step, parse_text(done.output), done.output)
    result.exit_status = done.status
    result.details["command"] = command
    return result


def _console_probe(session: GuestSession, step: Step) -> StepResult:
    """Parse a probe that prints on its own (an initfs probe), line by line as the console streams.

    The budget counts from the last protocol line, so a long run that keeps reporting is not a hang.
    """
    parser, lines = ProbeParser(), []
    budget = step.timeout * session.factor
    last_progress = time.monotonic()
    while not parser.complete:
        try:
            remaining = last_progress + budget - time.monotonic()
            _, match = session.console.expect([_LINE], max(remaining, 0.0))
        except TimeoutError:
            return _probe_result(step, parser.finish(), "\n".join(lines), hang=f"no probe output for {budget:.0f} s")
        line = match.group(1)
        if line.startswith(HOST_REQUEST_PREFIX):
            lines.append(_host_request(session, step, line.removeprefix(HOST_REQUEST_PREFIX).strip()))
            last_progress = time.monotonic()
            continue
        parser.feed(line)
        if line.startswith(("KTAP", "ok ", "not ok ", "#", "1..")):  # other console noise is not progress
            lines.append(line)
            last_progress = time.monotonic()
    _read_trailing_comments(session, parser, lines)
    return _probe_result(step, parser.finish(), "\n".join(lines))


def _host_request(session: GuestSession, step: Step, request: str) -> str:
    """The probe asked the host to act (unplug_on_request / replug_on_request): do it over QMP. The line for
    the step's output says what was done; the probe sees the outcome (or its absence) and reports it."""
    device = step.params.get(f"{request}_on_request") if request in HOST_REQUESTS else None
    if device is None:
        return f"{HOST_REQUEST_PREFIX}{request} (ignored: the step has no {request}_on_request)"
    started = time.monotonic()
    try:
        if request == "unplug":
            session.unplug(device, step.timeout)
        else:
            session.hotplug(device)
    except (TimeoutError, QmpCommandError) as err:
        return f"{HOST_REQUEST_PREFIX}{request} {device}: failed ({err})"
    return f"{HOST_REQUEST_PREFIX}{request} {device}: done in {(time.monotonic() - started) * 1000:.1f} ms"


def _read_trailing_comments(session: GuestSession, parser: ProbeParser, lines: list[str]) -> None:
    """The last case's metric and diagnostic lines follow its result line: take those that come at once."""
    while True:
        try:
            _, match = session.console.expect([_LINE], TRAILING_LINES_WAIT)
        except (TimeoutError, ConsoleClosed):  # a probe may end the VM itself (isa-debug-exit)
            return
        if not match.group(1).startswith("#"):
            return
        parser.feed(match.group(1))
        lines.append(match.group(1))


_LINE = re.compile(r"([^\n]*)\n")
TRAILING_LINES_WAIT = 0.3


def _probe_result(step: Step, report: ProbeReport, output: str, hang: str = "") -> StepResult:
    allowed = set(step["allow_fail"])
    cases = [
        {**case.as_dict(), "allowed_failure": case.name in allowed and case.status == CaseStatus.FAIL}
        for case in report.cases
    ]
    result = StepResult(step.name, step.kind, StepStatus.PASS, output=output, cases=cases)
    known = [case["name"] for case in cases if case["allowed_failure"]]
    if known:
        result.reason = f"known failures allowed by the scenario: {', '.join(known)}"
    result.details = {"plan": report.plan, "parse_errors": report.errors}
    if report.probe is not None:  # which program measured, for reports that set probes side by side
        result.details["probe"] = {"program": report.probe.program, "version": report.probe.version,
                                   "os": report.probe.os}  # fmt: skip
    failed = _failed_cases(report, step)
    if hang:
        result.status, result.reason = (
            StepStatus.HANG,
            f"{hang}; {len(report.cases)} of {report.plan or '?'} cases reported",
        )
    elif report.errors or failed or not report.cases:
        result.status = StepStatus.FAIL
        reasons = [*(f"case {c.name}: {c.reason or c.status}" for c in failed), *report.errors]
        result.reason = "; ".join(reasons) or "the probe reported no cases"
    return result


def _failed_cases(report: ProbeReport, step: Step) -> list[CaseResult | _Missing]:
    wanted = set(step["expect_cases"]) if step["expect_cases"] else None
    allowed = set(step["allow_fail"])
    failed: list[CaseResult | _Missing] = [
        c for c in report.cases if c.status in (CaseStatus.FAIL, CaseStatus.ERROR) and c.name not in allowed
    ]
    if wanted is not None:
        failed = [c for c in failed if c.name in wanted]
        seen = {c.name for c in report.cases if c.status == CaseStatus.PASS}
        failed += [_Missing(name) for name in sorted(wanted - seen - {c.name for c in failed})]
    return failed


@dataclass
class _Missing:
    name: str
    status: CaseStatus = CaseStatus.ERROR
    reason: str = "expected case did not pass or was not reported"


def _driver(session: GuestSession, step: Step) -> StepResult:
    """A host-side driver against a guest program (tokio's examples): its own folder with driver.log.

    The driver's verdict on the example is the step's: it worked (pass), it did the wrong thing or the host
    could not reach it (fail), a guest program was still running or silent when its time was up (hang). The
    guest's shell not answering, or QEMU exiting, go up as for any step.
    """
    driver = driver_named(step["driver"], step["settings"])
    folder = private_dir(session.run_dir / DRIVER_DIR / driver.name)
    log = DriverLog(folder / "driver.log")
    jobs = GuestJobs(session, log, session.factor)
    status, reason = StepStatus.INTERRUPTED, "the driver did not finish"
    try:
        reason = driver.run(DriverContext(session, jobs, log, session.factor))
        status = StepStatus.PASS
    except GuestHang as err:
        status, reason = StepStatus.HANG, str(err)
    except DriverFailure as err:
        status, reason = StepStatus.FAIL, str(err)
    except OSError as err:  # the host's sockets: a reset or refused connection is the guest's answer
        status, reason = StepStatus.FAIL, f"host-side network error: {type(err).__name__}: {err} (nothing listening?)"
    finally:
        _stop_programs(jobs, log)
        log.note(f"result: {status}: {reason}")
        log.close()
    details = {"driver_log": str((folder / "driver.log").relative_to(session.run_dir)), "example": driver.example}
    return StepResult(step.name, step.kind, status, reason=reason, details=details)


def _stop_programs(jobs: GuestJobs, log: DriverLog) -> None:
    """Stop what the driver left running (a failed stop is logged: the step's own outcome stands)."""
    try:
        jobs.stop_all()
    except (CommandTimeout, ConsoleClosed) as err:
        log.note(f"cleanup failed: {err}")


def _host(session: GuestSession, step: Step) -> StepResult:
    network = session.network
    assert isinstance(network, E1000)
    if step["host"] == "send":
        return _host_send(network, step, step.timeout * session.factor)
    return _host_receive(session, step, step.timeout * session.factor)


def _host_send(network: E1000, step: Step, timeout: float) -> StepResult:
    proto, guest_port = step["proto"], step["guest_port"]
    try:
        port = network.host_port(guest_port, proto)
    except KeyError as err:
        return StepResult(step.name, step.kind, StepStatus.FAIL, reason=str(err))
    payload = step["payload"].encode()
    expected = (step["expect"] if step["expect"] is not None else step["payload"]).encode()
    exchange = _tcp_exchange if proto == "tcp" else _udp_exchange
    got, problem = exchange(port, payload, len(expected), timeout)
    details = {"host_port": port, "sent": payload.decode(errors="replace"), "received": got.decode(errors="replace")}
    if problem is None and got != expected:
        problem = f"wrong bytes: got {got[:80]!r}, expected {expected[:80]!r}"
    status = StepStatus.PASS if problem is None else StepStatus.FAIL
    reason = problem or f"{proto} 127.0.0.1:{port} -> guest:{guest_port} echoed {len(got)} bytes"
    return StepResult(step.name, step.kind, status, reason=reason, details=details)


def _tcp_exchange(port: int, payload: bytes, want: int, timeout: float) -> tuple[bytes, str | None]:
    """Connect (retrying: user-mode networking accepts, then resets, while no guest listener exists)."""
    deadline = time.monotonic() + timeout
    problem = "no listener in the guest"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=max(0.5, deadline - time.monotonic())) as conn:
                conn.sendall(payload)
                got = netio.read_exactly(conn, want, deadline)
                if got:
                    return got, None
                problem = "connection closed with no echo (no listener in the guest?)"
        except (ConnectionError, OSError) as err:
            problem = f"no listener in the guest ({err.__class__.__name__})"
        time.sleep(0.3)
    return b"", f"{problem} within {timeout:.0f} s"


def _udp_exchange(port: int, payload: bytes, want: int, timeout: float) -> tuple[bytes, str | None]:
    got = netio.udp_exchange(port, payload, time.monotonic() + timeout)
    return (got, None) if got is not None else (b"", f"no UDP echo within {timeout:.0f} s")


def _host_receive(session: GuestSession, step: Step, timeout: float) -> StepResult:
    if step["guest_command"] is None:
        network = session.network
        assert isinstance(network, E1000)
        return _host_listen(network, step, timeout)
    proto, payload = step["proto"], step["payload"].encode()
    sock_type = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, sock_type) as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if proto == "tcp":
            listener.listen(4)
        fill = {"{host_addr}": GUEST_HOST_ADDRESS, "{host_port}": str(port), "{payload}": step["payload"]}
        command = step["guest_command"]
        for key, value in fill.items():
            command = command.replace(key, value)
        done = session.run(command, step.timeout)
        got = _receive(listener, proto, len(payload), time.monotonic() + min(timeout, 10))
    details = {"host_port": port, "command": command, "received": got.decode(errors="replace")}
    if got == payload:
        reason = f"guest -> {GUEST_HOST_ADDRESS}:{port} ({proto}) delivered {len(got)} bytes"
        return StepResult(
            step.name, step.kind, StepStatus.PASS, exit_status=done.status, reason=reason, details=details
        )
    reason = "nothing reached the host listener" if not got else f"wrong bytes: {got[:80]!r}"
    reason += f" (guest command exit status {done.status})"
    return StepResult(step.name, step.kind, StepStatus.FAIL, exit_status=done.status, output=done.output, reason=reason,
                      details=details)  # fmt: skip


def _host_listen(network: E1000, step: Step, timeout: float) -> StepResult:
    """A guest that sends by itself (the initfs probe) to the e1000's listener: a UDP datagram is answered with
    what came, so the guest knows it arrived; a TCP connection is accepted and read."""
    proto, payload = step["proto"], step["payload"].encode()
    port = network.listener_port(proto)
    sock_type = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, sock_type) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        if proto == "tcp":
            listener.listen(4)
        got = _receive(listener, proto, len(payload), time.monotonic() + timeout, answer=True)
    details = {"host_port": port, "received": got.decode(errors="replace")}
    if got == payload:
        reason = f"guest -> {GUEST_HOST_ADDRESS}:{port} ({proto}) delivered {len(got)} bytes"
        return StepResult(step.name, step.kind, StepStatus.PASS, reason=reason, details=details)
    reason = f"nothing reached 127.0.0.1:{port} in {timeout:.0f} s" if not got else f"wrong bytes: {got[:80]!r}"
    return StepResult(step.name, step.kind, StepStatus.FAIL, reason=reason, details=details)


def _receive(listener: socket.socket, proto: str, want: int, deadline: float, answer: bool = False) -> bytes:
    listener.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        if proto == "udp":
            data, sender = listener.recvfrom(65536)
            if answer:
                listener.sendto(data, sender)
            return data
        conn, _ = listener.accept()
        with conn:
            return netio.read_exactly(conn, want, deadline)
    except TimeoutError:
        return b""


STEP_RUNNERS: dict[str, Callable[[GuestSession, Step], StepResult]] = {
    "run": _run,
    "console": _console,
    "hotplug": _hotplug,
    "unplug": _unplug,
    "check_device": _check_device,
    "probe": _probe,
    "console_probe": _console_probe,
    "driver": _driver,
    "host": _host,
}
