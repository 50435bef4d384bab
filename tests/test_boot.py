"""Boot the real reference guest once and drive it through the console, QMP and SSH."""

from __future__ import annotations

import json
import re
from pathlib import Path

import paramiko
import pytest

from hil.guest.console import CommandTimeout
from hil.guest.profiles import GuestOptions, get_profile
from hil.session import GuestSession
from tests.helpers import sha256_of

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def base_digests(reference_image) -> dict[str, str]:
    return {str(p): sha256_of(p) for p in (reference_image.vmlinux, reference_image.initramfs)}


@pytest.fixture(scope="module")
def session(reference_image, base_digests, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("boot-session")
    with GuestSession(get_profile("reference"), GuestOptions(accel="tcg"), run_dir) as session:
        session.start()
        yield session


def test_every_boot_stage_is_reached_in_order(session: GuestSession) -> None:
    assert session.timeline is not None
    marks = session.timeline.marks
    assert [m.status for m in marks] == ["reached"] * len(marks)
    seconds = [m.seconds for m in marks]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert session.timeline.mark("network").line == "hil-init: network eth0 10.0.2.15"


def test_commands_report_exit_status_and_output(session: GuestSession) -> None:
    assert session.run("true").status == 0
    assert session.run("false").status == 1
    assert session.run("(exit 7)").status == 7
    assert session.run("echo hello").output == "hello\n"
    assert session.run("printf 'no newline'").output == "no newline"
    assert session.run("ls /nonexistent").status != 0


def test_echoed_marker_text_cannot_fool_the_parser(session: GuestSession) -> None:
    result = session.run("echo HB; echo HE:0; echo 'line with HB HE'")
    assert result.status == 0
    assert result.output == "HB\nHE:0\nline with HB HE\n"


def test_long_command_lines_are_not_wrapped(session: GuestSession) -> None:
    words = " ".join(f"w{i}" for i in range(120))
    result = session.run(f"echo {words}")
    assert result.output == words + "\n"


def test_escape_sequences_are_stripped_for_matching_but_kept_in_the_raw_log(session: GuestSession) -> None:
    result = session.run(r"printf '\033[1mbold\033[0m plain\n'")
    assert result.output == "bold plain\n"
    assert b"\x1b[1mbold\x1b[0m plain" in (session.run_dir / "serial.log").read_bytes()


def test_a_command_timeout_is_reported_and_the_shell_recovers(session: GuestSession) -> None:
    with pytest.raises(CommandTimeout):
        session.run("sleep 30", timeout=1)
    session.console.resync()
    assert session.run("echo back").output == "back\n"


def test_serial_log_holds_the_raw_bytes_from_the_first_one(session: GuestSession) -> None:
    raw = (session.run_dir / "serial.log").read_bytes()
    assert b"Linux version" in raw[:4096]
    assert b"HIL-GUEST-READY" in raw


def test_qmp_events_are_kept_with_timestamps(session: GuestSession) -> None:
    qmp = session.machine.qmp
    assert qmp.execute("query-status")["status"] == "running"
    before = qmp.event_count()
    qmp.execute("stop")
    stop = qmp.wait_event("STOP", 5, since=before)
    qmp.execute("cont")
    resume = qmp.wait_event("RESUME", 5, since=before)
    assert resume.monotonic >= stop.monotonic and stop.qemu_timestamp
    log = [json.loads(line) for line in (session.run_dir / "qmp.jsonl").read_text().splitlines()]
    assert {"STOP", "RESUME"} <= {r.get("event") for r in log if r["dir"] == "event"}
    assert any(r.get("execute") == "stop" for r in log if r["dir"] == "cmd")
    assert session.run("echo alive").output == "alive\n"


def test_hmp_errors_raise(session: GuestSession) -> None:
    from hil.qemu.qmp import QmpCommandError

    assert "RIP=" in session.machine.qmp.hmp("info registers")
    with pytest.raises(QmpCommandError, match="Error"):
        session.machine.qmp.hmp("device_del no-such-device")


def test_ssh_with_the_generated_key(session: GuestSession, reference_image) -> None:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    key = paramiko.Ed25519Key.from_private_key_file(str(reference_image.ssh_key))
    client.connect("127.0.0.1", port=session.ssh_port, username="root", pkey=key, timeout=30,
                   allow_agent=False, look_for_keys=False)  # fmt: skip
    try:
        _, stdout, _ = client.exec_command("cat /proc/sys/kernel/hostname; id -u")
        assert stdout.read().decode().split() == [stdout_host(session), "0"]
    finally:
        client.close()


def stdout_host(session: GuestSession) -> str:
    return session.run("cat /proc/sys/kernel/hostname").output.strip()


def test_forwarded_ports_listen_on_loopback_only(session: GuestSession) -> None:
    netdev = next(a for a in session.machine.argv if a.startswith("user,"))
    assert re.findall(r"hostfwd=tcp:([\d.]+):", netdev) == ["127.0.0.1"]


def test_run_folder_and_sockets_are_private(session: GuestSession) -> None:
    assert session.run_dir.stat().st_mode & 0o077 == 0
    assert session.machine.socket_dir.stat().st_mode & 0o077 == 0


def test_base_kernel_and_initramfs_are_untouched(session: GuestSession, base_digests: dict[str, str]) -> None:
    session.run("echo scribble > /tmp/x && sync")
    for path, digest in base_digests.items():
        assert sha256_of(Path(path)) == digest


def test_a_probe_printing_by_itself_is_parsed_as_it_streams(session: GuestSession) -> None:
    from hil.scenario import Step
    from hil.steps import run_step

    script = r"sleep 0.5; printf 'KTAP version 1\n1..2\n# heartbeat spin 1\nok 1 spin\n'; sleep 1; "
    script += r"printf 'not ok 2 wait # futex timed out\n# metric wait.lat_us=12.5 us\n'"
    session.run(f"( {script} ) > /dev/console &")
    params = {"console_probe": "initfs", "expect_cases": None, "allow_fail": []}
    result = run_step(session, Step("stream", "console_probe", params, timeout=10))
    assert result.status == "fail" and "case wait: futex timed out" in result.reason
    assert [(c["name"], c["status"]) for c in result.cases] == [("spin", "pass"), ("wait", "fail")]
    assert result.cases[1]["metrics"]["lat_us"]["value"] == 12.5
    assert session.run("echo still here").output == "still here\n"
