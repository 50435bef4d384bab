"""`hil exec` asks again only while its command surely has not started: the retry decision, the loop around
it (no guest: the SSH attempts are stand-ins) and how GuestSsh tells "not started" from "may have run"."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from hil import kept_ssh
from hil.errors import InfraError
from hil.guest.ssh import CommandNotStarted, GuestSsh, SshResult
from hil.kept_ssh import EXEC_RETRY_DELAYS, EXEC_RETRY_SECONDS, LoginFailed, retry_delay

RECORD = {"run_dir": "/runs/kept", "guest": "reference", "ssh_key": "/keys/id", "ssh_port": 2222}


def test_retries_only_what_surely_did_not_start() -> None:
    assert retry_delay(LoginFailed("Connection refused"), 1, 0.0) == EXEC_RETRY_DELAYS[0]
    assert retry_delay(CommandNotStarted("Channel closed."), 2, 1.0) == EXEC_RETRY_DELAYS[1]
    # The same words from paramiko without the proof that the command did not start: never again.
    assert retry_delay(paramiko.SSHException("Channel closed."), 1, 0.0) is None
    assert retry_delay(OSError("Connection reset by peer"), 1, 0.0) is None
    assert retry_delay(TimeoutError(), 1, 0.0) is None


def test_tries_and_time_are_bounded() -> None:
    last = len(EXEC_RETRY_DELAYS)
    assert retry_delay(CommandNotStarted("x"), last, 0.0) == EXEC_RETRY_DELAYS[-1]
    assert retry_delay(CommandNotStarted("x"), last + 1, 0.0) is None
    assert retry_delay(LoginFailed("x"), 1, EXEC_RETRY_SECONDS - EXEC_RETRY_DELAYS[0] / 2) is None


def _attempts(monkeypatch: pytest.MonkeyPatch, outcomes: list[object]) -> list[str]:
    calls: list[str] = []

    def attempt(port: int, access: object, command: str, timeout: float) -> SshResult:
        calls.append(command)
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(kept_ssh, "_run", attempt)
    monkeypatch.setattr(kept_ssh.time, "sleep", lambda seconds: None)
    return calls


def test_a_refused_session_is_asked_for_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _attempts(monkeypatch, [CommandNotStarted("closed"), LoginFailed("reset"), SshResult(0, "ok\n", "")])
    assert kept_ssh.run_once(RECORD, "true", 5).stdout == "ok\n"
    assert calls == ["true"] * 3


def test_a_command_that_may_have_run_is_not_run_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _attempts(monkeypatch, [paramiko.SSHException("Channel closed."), SshResult(0, "", "")])
    with pytest.raises(InfraError) as told:
        kept_ssh.run_once(RECORD, "touch /tmp/once", 5)
    assert calls == ["touch /tmp/once"]
    assert "/runs/kept" in str(told.value) and "not run again" in str(told.value)


def test_giving_up_names_the_vm_and_what_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _attempts(monkeypatch, [CommandNotStarted("sshd closed the session")] * (len(EXEC_RETRY_DELAYS) + 1))
    with pytest.raises(InfraError) as told:
        kept_ssh.run_once(RECORD, "true", 5)
    assert len(calls) == len(EXEC_RETRY_DELAYS) + 1
    message = str(told.value)
    assert "/runs/kept (reference)" in message and "starting the command" in message
    assert "sshd closed the session" in message and "did not run" in message


class _Transport:
    def __init__(self, channel: _Channel, alive: bool = True, opens: bool = True) -> None:
        self.channel, self.alive, self.opens = channel, alive, opens

    def is_active(self) -> bool:
        return self.alive

    def open_session(self, timeout: float) -> _Channel:
        if not self.opens:
            raise paramiko.ChannelException(1, "Administratively prohibited")
        return self.channel


class _Channel:
    """Fails exec the way paramiko does ("Channel closed."), the server having closed it or the link dying."""

    def __init__(self, transport_dies: bool) -> None:
        self.transport_dies, self.closed = transport_dies, False
        self.transport: _Transport | None = None

    def settimeout(self, timeout: float) -> None:
        pass

    def exec_command(self, command: str) -> None:
        self.closed = True
        if self.transport_dies and self.transport is not None:
            self.transport.alive = False
        raise paramiko.SSHException("Channel closed.")


def _ssh(channel: _Channel, **transport: bool) -> GuestSsh:
    ssh = GuestSsh.__new__(GuestSsh)  # no real client: only the transport is asked
    link = _Transport(channel, **transport)
    channel.transport = link
    ssh.client = type("Client", (), {"get_transport": lambda self: link})()
    return ssh


def test_guest_ssh_says_not_started_only_when_it_knows() -> None:
    with pytest.raises(CommandNotStarted):
        _ssh(_Channel(transport_dies=False))._start("true", 5)  # the server closed the session: no exec
    with pytest.raises(CommandNotStarted):
        _ssh(_Channel(transport_dies=False), opens=False)._start("true", 5)
    with pytest.raises(paramiko.SSHException) as lost:
        _ssh(_Channel(transport_dies=True))._start("true", 5)  # the link died: the ack may have been lost
    assert not isinstance(lost.value, CommandNotStarted)


def test_record_without_ssh_is_still_a_usage_error() -> None:
    from hil.errors import UsageError

    with pytest.raises(UsageError):
        kept_ssh.run_once({"run_dir": str(Path("/runs/x"))}, "true", 5)
