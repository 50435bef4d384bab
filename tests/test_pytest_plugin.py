"""The pytest plugin: fixtures on a booted guest under pytest-xdist, TOML scenarios as items, markers.

Guest tests run pytest in a subprocess (`-n 2`) on a small test file; each test records the ports, sockets
and run folders it saw, and the two workers must share none of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import xmlschema

from hil.pytest_plugin import device_table
from hil.scenario import builtin_names

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(__file__).parent / "data" / "junit.xsd"

GUEST_TESTS = """
import json, os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.hil_guest("reference"), pytest.mark.hil_devices("nvme:nvme0,size_mib=16")]


def record(request, session, **extra):
    seen = {"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "ssh_port": session.ssh_port,
            "serial_socket": str(session.machine.paths.serial_socket),
            "qmp_socket": str(session.machine.paths.qmp_socket), "run_dir": str(session.run_dir),
            "qemu_pid": session.machine.process.pid, **extra}
    (Path(os.environ["RECORD_DIR"]) / f"{request.node.name}.json").write_text(json.dumps(seen))


def test_console(request, hil_session, hil_console):
    record(request, hil_session)
    assert hil_console.run("echo $((6 * 7))").output.strip() == "42"


def test_qmp(request, hil_session, hil_qmp):
    record(request, hil_session)
    assert hil_qmp.execute("query-status")["status"] == "running"


def test_ssh_and_files(request, hil_session, hil_ssh):
    done = hil_ssh.run("uname -s; ls /dev/nvme0n1")
    assert done.ok and done.stdout.split() == ["Linux", "/dev/nvme0n1"]
    payload = bytes(range(256)) * 300
    hil_ssh.put(payload, "/tmp/payload.bin", mode=0o600)
    assert hil_ssh.get("/tmp/payload.bin") == payload
    assert hil_ssh.run("stat -c %a /tmp/payload.bin").stdout.strip() == "600"
    record(request, hil_session, sftp=hil_ssh.uses_sftp)


def test_device_marker(request, hil_session):
    record(request, hil_session)
    assert hil_session.check_device("nvme0").ok


@pytest.mark.hil_guest("redox")
def test_other_guest_is_skipped_when_the_run_names_one(hil_session):
    raise AssertionError("must be skipped: the run is for --hil-guest reference")
"""

FAILING_SCENARIO = """
name = "fails-on-purpose"
description = "a step that fails, to see the failure text"
[[steps]]
name = "missing file"
run = "echo looking; ls /no/such/file"
"""


def plugin_args() -> list[str]:
    """`-p hil.pytest_plugin` unless the plugin is already registered through its entry point."""
    installed = any(ep.name == "hil" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "hil.pytest_plugin"]


def run_pytest(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "HIL_PYTEST"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "pytest", *plugin_args(), "-p", "no:cacheprovider", "-q", "-rs", *args]
    return subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)


def test_device_specs_become_scenario_tables() -> None:
    assert device_table("nvme:nvme0") == {"kind": "nvme", "id": "nvme0"}
    assert device_table("usb-storage:usb0,controller=xhci0,size_mib=32") == {
        "kind": "usb-storage", "id": "usb0", "controller": "xhci0", "size_mib": 32,
    }  # fmt: skip
    table = {"kind": "e1000", "id": "net0", "forwards": ["tcp:7000"]}
    assert device_table(table) == table and device_table(table) is not table


def test_hil_scenarios_collects_the_built_in_ones_or_the_paths_given(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, "--hil-scenarios", "--collect-only")
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line) == builtin_names()
    (tmp_path / "mine.toml").write_text(FAILING_SCENARIO)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    done = run_pytest(tmp_path, "--hil-scenarios", "--collect-only", ".")
    assert [line for line in done.stdout.splitlines() if "::" in line] == ["mine.toml::mine"]
    assert run_pytest(tmp_path, "--collect-only", ".").returncode == 5  # without the flag TOML is not collected


@pytest.mark.qemu
@pytest.mark.slow
def test_guest_fixtures_under_xdist_share_nothing_between_workers(tmp_path: Path, reference_image) -> None:
    (tmp_path / "test_guest.py").write_text(GUEST_TESTS)
    (tmp_path / "fails.toml").write_text(FAILING_SCENARIO)
    records = tmp_path / "records"
    records.mkdir()
    artifacts = tmp_path / "artifacts"
    os.environ["RECORD_DIR"] = str(records)
    try:
        done = run_pytest(tmp_path, "-n", "2", "--hil-guest", "reference", "--hil-artifacts", str(artifacts),
                          "--hil-scenarios", "--junitxml", "junit.xml", "test_guest.py", "fails.toml")  # fmt: skip
    finally:
        del os.environ["RECORD_DIR"]
    output = done.stdout + done.stderr
    assert "4 passed" in output and "1 skipped" in output and "1 failed" in output, output
    # The scenario's failure says what failed and shows the guest's last words, not a Python traceback.
    assert "verdict fail: step 'missing file'" in output and "last console lines" in output, output[-4000:]
    assert "No such file" in output and "Traceback" not in output, output[-4000:]

    seen = [json.loads(path.read_text()) for path in records.glob("*.json")]
    assert len(seen) == 4
    by_worker: dict[str, list[dict]] = {}
    for entry in seen:
        by_worker.setdefault(entry["worker"], []).append(entry)
    assert sorted(by_worker) == ["gw0", "gw1"], by_worker
    sessions = {worker: {json.dumps({k: v for k, v in e.items() if k != "sftp"}) for e in entries}
                for worker, entries in by_worker.items()}  # fmt: skip
    assert all(len(found) == 1 for found in sessions.values())  # one boot per worker, shared by its tests
    first, second = (by_worker[worker][0] for worker in ("gw0", "gw1"))
    for key in ("ssh_port", "serial_socket", "qmp_socket", "run_dir", "qemu_pid"):
        assert first[key] != second[key], key
    assert Path(first["serial_socket"]).parent != Path(second["serial_socket"]).parent
    for entry in seen:
        assert Path(entry["run_dir"]).parent == artifacts / entry["worker"]
    ssh_entry = next(entry for entry in seen if "sftp" in entry)
    assert ssh_entry["sftp"] is False  # the reference guest's dropbear has no sftp-server: files go by `cat`

    junit = tmp_path / "junit.xml"
    xmlschema.XMLSchema(str(SCHEMA)).validate(str(junit))  # pytest's own JUnit fits the schema too
    assert 'name="hil_verdict" value="fail"' in junit.read_text()


# --- the documented API, and what a user's own test folder sees ---------------------------------------------


def test_fixtures_are_documented_and_the_internal_one_is_hidden(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, "--fixtures")
    assert done.returncode == 0, done.stdout + done.stderr
    shown = {name: done.stdout.split(f"{name} ", 1)[1].split("\n\n", 1)[0] for name in
             ("hil_session", "hil_ssh", "hil_qmp", "hil_console")}  # fmt: skip
    for word in ("run(cmd)", "hotplug(id)", "unplug(id)", "check_device(id)"):
        assert word in shown["hil_session"], shown["hil_session"]
    for word in ("run(cmd", "put(bytes | Path", "get(remote)"):
        assert word in shown["hil_ssh"], shown["hil_ssh"]
    assert "events" in shown["hil_qmp"] and "events()" not in shown["hil_qmp"]
    assert "hil_pool" not in done.stdout, "an internal fixture shows in pytest --fixtures"


def test_hil_scenarios_without_paths_keeps_the_projects_own_tests(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text("def test_mine():\n    pass\n")
    done = run_pytest(tmp_path, "--hil-scenarios", "--collect-only")
    collected = [line for line in done.stdout.splitlines() if "::" in line]
    assert "test_mine.py::test_mine" in collected, done.stdout
    assert sorted(line.split("::")[-1] for line in collected if "test_mine" not in line) == builtin_names()


def test_a_bad_device_spec_fails_in_one_line_without_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "test_bad.py").write_text(
        "import pytest\n\n@pytest.mark.hil_devices('warp-drive:w0')\ndef test_bad(hil_session):\n    pass\n"
    )
    artifacts = tmp_path / "artifacts"
    done = run_pytest(tmp_path, "--hil-artifacts", str(artifacts))
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "1 error" in output, output
    assert "hil_devices('warp-drive:w0')" in output and "pytest_plugin.py" not in output, output
    assert not artifacts.exists() or not any(artifacts.rglob("*")), "a bad spec left a run folder"


FAILING_TEST = """
def test_disk_is_there(hil_session):
    done = hil_session.run("echo looking for the disk; ls /dev/nvme9n1")
    assert done.ok, done.output
"""


@pytest.mark.qemu
def test_a_failing_test_shows_its_run_folder_and_the_guests_last_lines(tmp_path: Path, reference_image) -> None:
    (tmp_path / "test_fails.py").write_text(FAILING_TEST)
    artifacts = tmp_path / "artifacts"
    done = run_pytest(tmp_path, "--hil-artifacts", str(artifacts))
    output = done.stdout + done.stderr
    assert done.returncode == 1 and "1 failed" in output, output
    section = output.split("hil guest", 1)[1]
    folder = next(line for line in section.splitlines() if line.startswith("run folder: ")).split(": ", 1)[1]
    assert Path(folder).is_dir() and "-shared-reference-" in Path(folder).name, folder
    assert "| hil# echo looking for the disk; ls /dev/nvme9n1" in section, section
    assert "printf '%s%s" not in section and "HB" not in section.replace("| hil#", "")
