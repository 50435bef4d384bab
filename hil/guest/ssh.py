"""SSH into a guest that runs an SSH server (paramiko): commands with exit status, and file transfer.

The session forwards the guest's SSH port to 127.0.0.1 and the profile says how to log in
(GuestProfile.ssh_access); GuestSession.ssh() connects, retrying until the guest's sshd answers.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from hil.guest.profiles.base import SshAccess

SSH_CONNECT_SECONDS = 30.0


class CommandNotStarted(paramiko.SSHException):
    """The guest's sshd never took the command: no session could be opened, or the server itself closed or
    refused the session, over a connection still up, before acknowledging the exec request. An sshd acknowledges
    exec only once the command has started (dropbear and OpenSSH alike), and that reply comes before anything
    else it sends on the session, so asking again on a new session cannot run the command twice."""


@dataclass(frozen=True)
class SshResult:
    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0


class GuestSsh:
    """Commands and files over SSH. Files go by SFTP when the guest has an sftp-server, else through
    `cat` on an exec channel (the reference guest's dropbear has none)."""

    def __init__(self, client: paramiko.SSHClient) -> None:
        self.client = client
        self._sftp: paramiko.SFTPClient | None = None
        self.uses_sftp = self._open_sftp()

    @classmethod
    def connect(
        cls, port: int, access: SshAccess, timeout: float = SSH_CONNECT_SECONDS, attempt_timeout: float = 10.0
    ) -> GuestSsh:
        """Log in on 127.0.0.1:`port` (a forward to the guest's sshd), retrying until it answers or `timeout`
        has passed; each attempt waits `attempt_timeout` for the connection, banner and login."""
        deadline = time.monotonic() + timeout
        while True:
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a new guest key every boot
            try:
                client.connect(
                    "127.0.0.1",
                    port=port,
                    username=access.user,
                    key_filename=str(access.key_file),
                    look_for_keys=False,
                    allow_agent=False,
                    timeout=attempt_timeout,
                    banner_timeout=attempt_timeout,
                    auth_timeout=attempt_timeout,
                )
                return cls(client)
            except (OSError, paramiko.SSHException):
                client.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def run(self, command: str, timeout: float = 60.0, stdin: bytes | None = None) -> SshResult:
        """The command's status and output. CommandNotStarted when it surely did not start (see there); any
        other SSHException or OSError once it may have."""
        channel = self._start(command, timeout)
        if stdin is not None:
            channel.sendall(stdin)
        channel.shutdown_write()
        stdout, stderr = _drain(channel)
        return SshResult(channel.recv_exit_status(), stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    def _start(self, command: str, timeout: float) -> paramiko.Channel:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise CommandNotStarted("the SSH connection is already closed")
        try:
            channel = transport.open_session(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as err:  # a session alone runs nothing
            raise CommandNotStarted(f"opening an SSH session failed: {err or type(err).__name__}") from err
        channel.settimeout(timeout)
        try:
            channel.exec_command(command)
        except paramiko.SSHException as err:
            # Not acknowledged. Only a refusal by the server over a live connection proves the command did not
            # start; a connection that died meanwhile may have lost the acknowledgement in flight.
            if channel.closed and transport.is_active():
                raise CommandNotStarted(f"the guest's sshd closed the session before starting it: {err}") from err
            raise
        return channel

    def put(self, data: bytes | Path, remote: str, mode: int = 0o644) -> None:
        payload = data.read_bytes() if isinstance(data, Path) else data
        if self._sftp is not None:
            with self._sftp.open(remote, "wb") as handle:
                handle.write(payload)
            self._sftp.chmod(remote, mode)
            return
        quoted = shlex.quote(remote)
        done = self.run(f"cat > {quoted} && chmod {mode:o} {quoted}", stdin=payload)
        if not done.ok:
            raise OSError(f"writing {remote} in the guest failed ({done.status}): {done.stderr.strip()}")

    def get(self, remote: str) -> bytes:
        if self._sftp is not None:
            with self._sftp.open(remote, "rb") as handle:
                return handle.read()
        channel = self.client.get_transport().open_session()
        channel.exec_command(f"cat {shlex.quote(remote)}")
        channel.shutdown_write()
        stdout, stderr = _drain(channel)
        status = channel.recv_exit_status()
        if status != 0:
            raise OSError(f"reading {remote} in the guest failed ({status}): {stderr.decode(errors='replace').strip()}")
        return stdout

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
        self.client.close()

    def _open_sftp(self) -> bool:
        try:
            self._sftp = self.client.open_sftp()
        except (paramiko.SSHException, EOFError, OSError):
            self._sftp = None
        return self._sftp is not None


def _drain(channel: paramiko.Channel) -> tuple[bytes, bytes]:
    """Read stdout and stderr to the end together, so neither pipe fills and blocks the other."""
    stdout, stderr = bytearray(), bytearray()
    while True:
        progressed = False
        if channel.recv_ready():
            stdout += channel.recv(65536)
            progressed = True
        if channel.recv_stderr_ready():
            stderr += channel.recv_stderr(65536)
            progressed = True
        pending = channel.recv_ready() or channel.recv_stderr_ready()
        if channel.exit_status_ready() and not pending and (channel.eof_received or channel.closed):
            return bytes(stdout), bytes(stderr)
        if not progressed:
            time.sleep(0.005)
