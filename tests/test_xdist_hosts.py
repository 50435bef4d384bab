"""The pytest plugin across hosts: pytest-xdist workers on this machine and on a second "host" reached over
SSH (xdist's execnet `ssh=` transport), each booting its own guests, with results and run folders coming
back to the controller.

The second host is this machine seen through a private sshd on 127.0.0.1 as another user with its own home,
so its caches, state folder, sockets and forwarded ports are truly its own. It gets what ci/README.md says
every host needs: hil (a wheel of this checkout) with pytest-xdist in a venv, and the reference guest built
by that user. Needs root (to add the user and start sshd) and OpenSSH's server; skips with the reason
otherwise. The user and its venv are kept between runs (a second run only reinstalls hil).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
USER = "hil-remote"
HOME = Path("/var/tmp/hil-remote")
SSHD = Path("/usr/sbin/sshd")
SYSTEM_PYTHON = Path("/usr/bin/python3")  # the other user cannot run root's own interpreter

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.skipif(os.geteuid() != 0, reason="adding the second host's user and its sshd needs root"),
    pytest.mark.skipif(not SSHD.exists(), reason="no OpenSSH server (apt-get install openssh-server)"),
    pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3 for the second host's venv"),
]


@dataclass
class SecondHost:
    ssh_config: Path
    python: str

    def run(self, command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ssh", "-F", str(self.ssh_config), "second-host", command], capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    @property
    def tx(self) -> str:
        return f"ssh=second-host//ssh_config={self.ssh_config}//python={self.python}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_root(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _add_user(public_key: str) -> None:
    if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
        _as_root("useradd", "--create-home", "--home-dir", str(HOME), "--shell", "/bin/bash", USER)
    _as_root("usermod", "-p", "*", USER)  # no password, yet not locked: sshd without PAM refuses locked users
    if not HOME.is_dir():  # the user is left from an earlier run whose home (in /var/tmp) was cleaned away
        HOME.mkdir(mode=0o755, parents=True)
        _as_root("chown", f"{USER}:{USER}", str(HOME))
    ssh_dir = HOME / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key)
    (ssh_dir / "authorized_keys").chmod(0o600)
    _as_root("chown", "-R", f"{USER}:{USER}", str(ssh_dir))


def _start_sshd(folder: Path, port: int) -> subprocess.Popen[bytes]:
    _as_root("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key"))
    config = folder / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {folder / "host_key"}
PidFile {folder / "sshd.pid"}
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
AllowUsers {USER}
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder
    sshd = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return sshd
        except OSError:  # not listening yet
            time.sleep(0.1)
    sshd.kill()
    raise AssertionError(f"sshd did not listen: {sshd.stderr.read().decode() if sshd.stderr else ''}")


def _install_hil(host: SecondHost, folder: Path) -> None:
    """hil as a wheel of this checkout (what a host gets from `pip install hil`), with pytest-xdist."""
    wheels = HOME / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True)  # fmt: skip
    _as_root("chown", "-R", f"{USER}:{USER}", str(wheels))
    venv = HOME / "venv"
    steps = [f"test -x {venv}/bin/python || {SYSTEM_PYTHON} -m venv {venv}",
             f"{venv}/bin/pip install -q --force-reinstall --no-deps {wheels}/*.whl",
             f"{venv}/bin/pip install -q {wheels}/*.whl pytest-xdist",
             f"{venv}/bin/hil image reference"]  # fmt: skip
    for step in steps:
        done = host.run(step)
        assert done.returncode == 0, f"{step}: {done.stdout[-1500:]}{done.stderr[-1500:]}"


@pytest.fixture(scope="module")
def second_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondHost]:
    folder = tmp_path_factory.mktemp("second-host")
    folder.chmod(0o755)  # sshd reads its config and host key as root; the user needs nothing here
    _as_root("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "client_key"))
    _add_user((folder / "client_key.pub").read_text())
    port = _free_port()
    sshd = _start_sshd(folder, port)
    ssh_config = folder / "ssh_config"
    ssh_config.write_text(f"""Host second-host
  HostName 127.0.0.1
  Port {port}
  User {USER}
  IdentityFile {folder / "client_key"}
  IdentitiesOnly yes
  BatchMode yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
""")
    host = SecondHost(ssh_config, str(HOME / "venv" / "bin" / "python"))
    try:
        _install_hil(host, folder)
        yield host
    finally:
        sshd.terminate()
        sshd.wait(timeout=10)


TESTS = '''
import os

def test_a_guest_boots_where_the_worker_runs(hil_session):
    result = hil_session.run("uname -s")
    assert result.status == 0 and "Linux" in result.output
    print("worker home", os.environ["HOME"], "run folder", hil_session.run_dir)

def test_the_shell_answers(hil_session):
    assert hil_session.run("echo ok").output.strip() == "ok"
'''


def test_workers_here_and_on_a_second_host_each_boot_their_guests(second_host: SecondHost, tmp_path: Path) -> None:
    suite = tmp_path / "their_tests"
    suite.mkdir()
    (suite / "test_guest.py").write_text(TESTS)
    junit = tmp_path / "results.xml"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--dist", "each",
            "--tx", f"popen//python={sys.executable}", "--tx", second_host.tx, "--rsyncdir", str(suite),
            str(suite), f"--junitxml={junit}", "-o", "junit_family=xunit2"]  # fmt: skip
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert len(cases) == 4  # --dist each: both tests on both hosts
    assert not [case for case in cases if case.find("failure") is not None or case.find("error") is not None]
    run_dirs = [prop.get("value") for case in cases for prop in case.iter("property")
                if prop.get("name") == "hil_run_dir"]  # fmt: skip
    remote = [path for path in run_dirs if path.startswith(str(HOME))]
    local = [path for path in run_dirs if not path.startswith(str(HOME))]
    assert len(remote) == 2 and len(local) == 2, run_dirs
    # The second host's run folders are its own user's, with the artifacts a run keeps.
    for path in remote:
        folder = Path(path)
        assert folder.stat().st_uid == int(subprocess.check_output(["id", "-u", USER]))
        assert (folder / "serial.log").stat().st_size > 0
