"""A kept VM over SSH: `hil exec -- CMD` (one shot, exits with the command's status), `hil ssh` (the system
ssh client, interactive) and `hil scp` (files both ways). Each logs in with the key and forwarded port its
`hil run --keep` recorded in kept.json."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import paramiko
from rich.console import Console as Terminal

from hil.errors import InfraError, UsageError
from hil.guest.profiles import SshAccess
from hil.guest.ssh import CommandNotStarted, GuestSsh, SshResult
from hil.qemu.kept import load_kept

REMOTE_PREFIX = ":"  # `hil scp file :/tmp/` as with scp's `host:path`, the host being the kept VM
# The guest makes a new host key every boot: pinning it would only produce warnings.
SSH_OPTIONS = ("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR")


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
        raise InfraError(f"cannot log in to {_vm(record)} on port {port}: {err}") from None


def command_words(words: list[str]) -> list[str]:
    return words[1:] if words[:1] == ["--"] else words


# `hil exec` asks again, on a new connection, while the command surely has not started (the login failed, or
# the guest's dropbear refused or closed the session before taking the command, as it does now and then right
# after the previous session), never once it may have run: that would run it twice.
EXEC_RETRY_DELAYS = (0.5, 1.0, 2.0)  # seconds before the 2nd, 3rd and 4th try
EXEC_RETRY_SECONDS = 20.0  # no new try once this long has passed since the first began
LOGIN_ATTEMPT_SECONDS = 10.0


class LoginFailed(Exception):
    """The connection or login to the guest's sshd failed: nothing was asked of the guest yet."""


def retry_delay(failure: BaseException, tries: int, elapsed: float) -> float | None:
    """Seconds to wait before trying again after `tries` failed tries, the last with `failure`, `elapsed`
    seconds after the first began; None: give up (the command may have run, or tries or time are used up)."""
    if not isinstance(failure, (LoginFailed, CommandNotStarted)) or tries > len(EXEC_RETRY_DELAYS):
        return None
    delay = EXEC_RETRY_DELAYS[tries - 1]
    return delay if elapsed + delay < EXEC_RETRY_SECONDS else None


def run_once(record: dict[str, object], command: str, timeout: float) -> SshResult:
    """The command's result over SSH, the command run at most once (see EXEC_RETRY_DELAYS)."""
    port, access = ssh_login(record)
    started, tries = time.monotonic(), 0
    while True:
        tries += 1
        try:
            return _run(port, access, command, timeout)
        except (LoginFailed, CommandNotStarted) as failure:
            delay = retry_delay(failure, tries, time.monotonic() - started)
            if delay is None:
                what = "logging in" if isinstance(failure, LoginFailed) else "starting the command"
                raise InfraError(f"running {command!r} in {_vm(record)} failed: {what} over SSH (port {port}) "
                                 f"failed {tries} times, the last with: {failure}. "
                                 f"The command did not run") from None  # fmt: skip
            time.sleep(delay)
        except (OSError, EOFError, paramiko.SSHException) as err:
            why = str(err) or type(err).__name__
            raise InfraError(f"running {command!r} in {_vm(record)} over SSH failed after it may have started "
                             f"(not run again, so as not to run it twice): {why}") from None  # fmt: skip


def _run(port: int, access: SshAccess, command: str, timeout: float) -> SshResult:
    try:
        ssh = GuestSsh.connect(port, access, timeout=0, attempt_timeout=LOGIN_ATTEMPT_SECONDS)  # one attempt
    except (OSError, EOFError, paramiko.SSHException) as err:
        raise LoginFailed(str(err) or type(err).__name__) from err
    try:
        return ssh.run(command, timeout=timeout)
    finally:
        ssh.close()


def _vm(record: dict[str, object]) -> str:
    return f"the kept VM of {record['run_dir']} ({record.get('guest', 'guest')})"


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
    record = load_kept(args.run_dir)
    ssh = connect(record)
    try:
        if target.startswith(REMOTE_PREFIX):
            _put(ssh, Path(source), target[1:] or ".")
        else:
            _get(ssh, source[1:], Path(target))
    except paramiko.SSHException as err:
        raise InfraError(f"copying over SSH with {_vm(record)} failed: {err}") from None
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
