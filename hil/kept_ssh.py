"""A kept VM over SSH: `hil exec -- CMD` (one shot, exits with the command's status), `hil ssh` (the system
ssh client, interactive) and `hil scp` (files both ways). Each logs in with the key and forwarded port its
`hil run --keep` recorded in kept.json."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import paramiko
from rich.console import Console as Terminal

from hil.errors import InfraError, UsageError
from hil.guest.profiles import SshAccess
from hil.guest.ssh import GuestSsh, SshResult
from hil.qemu.kept import load_kept

REMOTE_PREFIX = ":"  # `hil scp file :/tmp/` as with scp's `host:path`, the host being the kept VM
# The guest makes a new host key every boot: pinning it would only produce warnings.
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR")


def add_kept_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="run_dir", type=Path, metavar="DIR",
                        help="the kept run's folder (default: the newest kept VM still running)")  # fmt: skip


def ssh_login(record: dict[str, object]) -> tuple[int, SshAccess]:
    """The forwarded port and login of a kept VM; usage error for a guest without SSH."""
    key, port = record.get("ssh_key"), record.get("ssh_port")
    if not key or not isinstance(port, int):
        guest = record.get("guest", "this guest")
        raise UsageError(f"the kept VM of {record['run_dir']} ({guest}) has no SSH server. "
                         f"Fix: use `hil console --run {record['run_dir']}`")  # fmt: skip
    return port, SshAccess(user=str(record.get("ssh_user", "root")), key_file=Path(str(key)))


def ssh_argv(record: dict[str, object], program: str = "ssh") -> list[str]:
    """The system client's command line into a kept VM (what `--keep` prints to paste)."""
    port, access = ssh_login(record)
    flag = "-p" if program == "ssh" else "-P"
    return [program, "-i", str(access.key_file), flag, str(port), *SSH_OPTIONS] + (
        [f"{access.user}@127.0.0.1"] if program == "ssh" else [])  # fmt: skip


def connect(record: dict[str, object]) -> GuestSsh:
    port, access = ssh_login(record)
    try:
        return GuestSsh.connect(port, access, timeout=10)
    except (OSError, paramiko.SSHException) as err:
        raise InfraError(f"cannot log in to the kept VM on port {port}: {err}") from None


def command_words(words: list[str]) -> list[str]:
    return words[1:] if words[:1] == ["--"] else words


def run_once(record: dict[str, object], command: str, timeout: float) -> SshResult:
    """The command's result over SSH. A session the guest's sshd refuses right after a login (dropbear
    still finishing the previous one) is asked for once more, on a new connection."""
    try:
        try:
            return _run(record, command, timeout)
        except paramiko.ChannelException:
            return _run(record, command, timeout)
    except (OSError, paramiko.SSHException) as err:
        raise InfraError(f"running {command!r} in the kept VM over SSH failed: {err}") from None


def _run(record: dict[str, object], command: str, timeout: float) -> SshResult:
    ssh = connect(record)
    try:
        return ssh.run(command, timeout=timeout)
    finally:
        ssh.close()


def exec_command(args: argparse.Namespace, terminal: Terminal) -> int:
    words = command_words(args.command)
    if not words:
        raise UsageError("name the command to run. Fix: hil exec -- uname -a")
    # One word is a shell line as typed (`hil exec -- 'ls | wc -l'`); several are quoted as given.
    done = run_once(load_kept(args.run_dir), words[0] if len(words) == 1 else shlex.join(words), args.timeout)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    return done.status


def ssh_command(args: argparse.Namespace, terminal: Terminal) -> int:
    argv = [*ssh_argv(load_kept(args.run_dir)), *command_words(args.command)]
    os.execvp(argv[0], argv)  # the user's own terminal, ssh's own escapes and exit status


def scp_command(args: argparse.Namespace, terminal: Terminal) -> int:
    source, target = args.source, args.target
    if source.startswith(REMOTE_PREFIX) == target.startswith(REMOTE_PREFIX):
        raise UsageError(f"scp {source} {target}: exactly one side is in the guest. "
                         f"Fix: prefix the guest's path with ':' (hil scp file.txt :/tmp/)")  # fmt: skip
    ssh = connect(load_kept(args.run_dir))
    try:
        if target.startswith(REMOTE_PREFIX):
            _put(ssh, Path(source), target[1:] or ".")
        else:
            _get(ssh, source[1:], Path(target))
    except paramiko.SSHException as err:
        raise InfraError(f"copying over SSH failed: {err}") from None
    finally:
        ssh.close()
    return 0


def _put(ssh: GuestSsh, local: Path, remote: str) -> None:
    if not local.is_file():
        raise UsageError(f"{local}: no such file. Fix: name a file to copy into the guest")
    if remote.endswith("/") or remote == ".":
        remote = f"{remote.rstrip('/')}/{local.name}" if remote != "." else local.name
    try:
        ssh.put(local, remote, mode=local.stat().st_mode & 0o777)
    except OSError as err:  # the guest's own words: no such folder, read-only, full
        raise UsageError(str(err)) from None


def _get(ssh: GuestSsh, remote: str, local: Path) -> None:
    if local.is_dir():
        local = local / Path(remote).name
    try:
        data = ssh.get(remote)
    except OSError as err:
        raise UsageError(str(err)) from None
    local.write_bytes(data)
