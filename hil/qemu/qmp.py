"""A synchronous facade over qemu.qmp's asyncio QMPClient.

The client runs on an event loop in a background thread; callers (the CLI, tests, scenario steps) get
blocking methods with timeouts. Every event is kept with the host time it arrived, in memory and in a
JSON-lines log next to every command and reply, so a run's QMP traffic can be read after the fact.
Waiters for events are released with an error when the connection drops, never left hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import ConnectError, EventListener, ExecInterruptedError, ExecuteError, QMPClient, Runstate

from hil.errors import InfraError

T = TypeVar("T")

# Connection retries while QEMU starts are expected; hil reports real failures itself (and logs all traffic).
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)


class QmpDisconnected(InfraError):
    """The QMP connection is gone (QEMU exited or closed it)."""


class QmpCommandError(InfraError):
    """QEMU answered a command with an error."""

    def __init__(self, command: str, error_class: str, description: str) -> None:
        self.command = command
        self.error_class = error_class
        self.description = description
        super().__init__(f"QMP {command} failed: {error_class}: {description}")


@dataclass(frozen=True)
class QmpEvent:
    """One asynchronous event, with the host's monotonic and wall times of its arrival."""

    name: str
    data: dict[str, Any]
    monotonic: float
    wall: float
    qemu_timestamp: dict[str, int] | None


class _EventSink(EventListener):
    """Accepts every event and hands it to the session synchronously, in arrival order."""

    def __init__(self, sink: Callable[[QmpEvent], None]) -> None:
        super().__init__()
        self._sink = sink

    async def put(self, event: Any) -> None:
        self._sink(
            QmpEvent(
                name=str(event["event"]),
                data=dict(event.get("data", {})),
                monotonic=time.monotonic(),
                wall=time.time(),
                qemu_timestamp=dict(event["timestamp"]) if "timestamp" in event else None,
            )
        )


class QmpSession:
    """Blocking QMP: connect, execute, HMP, and wait for events, with a log of everything."""

    def __init__(self, log_path: Path | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hil-qmp", daemon=True)
        self._thread.start()
        self._client = QMPClient("hil")
        self._client.register_listener(_EventSink(self._on_event))
        self._events: list[QmpEvent] = []
        self._cond = threading.Condition()
        self._connected = False
        self._closed_reason: str | None = None
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115

    # --- lifecycle -------------------------------------------------------------------------------------

    def connect(self, socket_path: Path, timeout: float = 10.0, give_up: Callable[[], bool] | None = None) -> None:
        """Connect, retrying while QEMU creates its socket, until `timeout` or `give_up()` (QEMU exited)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call(self._client.connect(str(socket_path)), timeout=max(1.0, deadline - time.monotonic()))
                break
            except (ConnectError, OSError) as err:
                if time.monotonic() > deadline or (give_up is not None and give_up()):
                    raise InfraError(f"cannot connect to QMP at {socket_path}: {err}") from err
                time.sleep(0.05)
        with self._cond:
            self._connected = True
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._watch_disconnect()))
        self._write_log({"dir": "connect", "path": str(socket_path)})

    def close(self) -> None:
        if self._client.runstate != Runstate.IDLE:
            with contextlib.suppress(Exception):
                self._call(self._client.disconnect(), timeout=2)
        self._mark_disconnected("closed by hil")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2)
        if not self._loop.is_running():
            self._loop.close()
        if self._log:
            self._log.close()
            self._log = None

    @property
    def connected(self) -> bool:
        return self._connected

    # --- commands ---------------------------------------------------------------------------------------

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Run a QMP command and return its `return` value; errors become QmpCommandError."""
        self._require_connected(command)
        self._write_log({"dir": "cmd", "execute": command, "arguments": arguments or {}})
        try:
            reply = self._call(self._client.execute(command, arguments), timeout)
        except ExecuteError as err:
            self._write_log({"dir": "error", "execute": command, "class": err.error_class, "desc": str(err)})
            raise QmpCommandError(command, err.error_class, err.error.error.desc) from None
        except (EOFError, ConnectionError, ExecInterruptedError, asyncio.CancelledError) as err:
            self._mark_disconnected(f"{type(err).__name__} during {command}")
            raise QmpDisconnected(f"QMP connection lost during {command}") from err
        except Exception as err:
            if self._client.runstate != Runstate.RUNNING:
                self._mark_disconnected(f"{type(err).__name__} during {command}")
                raise QmpDisconnected(f"QMP connection lost during {command}: {err}") from err
            raise
        self._write_log({"dir": "reply", "execute": command, "return": reply})
        return reply

    def hmp(self, command_line: str, timeout: float = 30.0) -> str:
        """A human monitor command; its errors come back as text starting with 'Error:', raised here."""
        text = str(self.execute("human-monitor-command", {"command-line": command_line}, timeout))
        if text.startswith("Error:"):
            raise QmpCommandError("human-monitor-command", "HmpError", f"{command_line!r}: {text.strip()}")
        return text

    def quit(self, timeout: float = 5.0) -> None:
        """Ask QEMU to exit; the connection dropping as it does so is the expected answer."""
        with contextlib.suppress(QmpDisconnected, TimeoutError):
            self.execute("quit", timeout=timeout)
        self._mark_disconnected("quit")

    # --- events -----------------------------------------------------------------------------------------

    @property
    def events(self) -> list[QmpEvent]:
        with self._cond:
            return list(self._events)

    def event_count(self) -> int:
        with self._cond:
            return len(self._events)

    def wait_event(
        self,
        name: str,
        timeout: float,
        *,
        since: int = 0,
        match: Callable[[QmpEvent], bool] | None = None,
    ) -> QmpEvent:
        """Block until an event `name` (index >= since, passing `match`) arrives; error on disconnect."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events[since:]:
                    if event.name == name and (match is None or match(event)):
                        return event
                if not self._connected:
                    raise QmpDisconnected(f"QMP closed ({self._closed_reason}) while waiting for {name}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no QMP event {name} within {timeout:.1f} s")
                self._cond.wait(remaining)

    # --- internals --------------------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop)
        try:
            return future.result(timeout + 1)
        except TimeoutError as err:
            future.cancel()
            raise TimeoutError(f"QMP call timed out after {timeout:.1f} s") from err

    def _on_event(self, event: QmpEvent) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()
        self._write_log({"dir": "event", "event": event.name, "data": event.data, "qemu_ts": event.qemu_timestamp})

    async def _watch_disconnect(self) -> None:
        while self._client.runstate == Runstate.RUNNING:
            await self._client.runstate_changed()
        self._mark_disconnected(f"runstate {self._client.runstate.name}")

    def _mark_disconnected(self, reason: str) -> None:
        with self._cond:
            if self._connected:
                self._closed_reason = reason
            self._connected = False
            self._cond.notify_all()

    def _require_connected(self, command: str) -> None:
        if not self._connected:
            raise QmpDisconnected(f"QMP is not connected ({self._closed_reason}); cannot run {command}")

    def _write_log(self, record: dict[str, Any]) -> None:
        if self._log is None:
            return
        record = {"t": round(time.time(), 6), **record}
        with contextlib.suppress(ValueError):  # log closed by another thread during shutdown
            self._log.write(json.dumps(record, default=str) + "\n")
