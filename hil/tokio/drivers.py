"""One host-side driver per tokio example: start it in the guest, prove it works with real traffic.

Servers in the guest listen on 0.0.0.0:<their port> and are reached through the e1000's hostfwd on
127.0.0.1 (host ports hil picks); clients in the guest reach servers on the host at 10.0.2.2. Each driver
declares the guest ports it needs (`ports`), so the matrix creates the e1000 with every forward before
boot. A driver returns a one-line account of what it proved, or raises DriverFailure with the reason.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

from hil.devices.net import GUEST_ADDRESS, GUEST_HOST_ADDRESS
from hil.guest.console import CommandResult
from hil.netio import read_exactly, read_line, read_to_end
from hil.session import GuestSession
from hil.tokio.examples import EXAMPLES_BY_NAME
from hil.tokio.guest import DriverFailure, DriverLog, GuestJobs
from hil.tokio.host import HostServer, tcp_connect, udp_exchange

LISTENING = "Listening on: "
DRIVER_DIR = "drivers"  # in a run folder: one folder per driver step, with its driver.log


@dataclass
class DriverContext:
    session: GuestSession
    jobs: GuestJobs
    log: DriverLog
    factor: float = 1.0

    def deadline(self, seconds: float) -> float:
        return time.monotonic() + seconds * self.factor

    def host_port(self, guest_port: int, proto: str = "tcp") -> int:
        return self.session.network.host_port(guest_port, proto)


@dataclass(frozen=True)
class Driver:
    name: str  # the matrix row
    example: str  # the binary it runs
    ports: tuple[tuple[str, int], ...] = ()  # guest ports forwarded from the host
    timeout: float = 30.0  # seconds for each wait, times the timeout factor

    @property
    def needs(self) -> tuple[str, ...]:
        """The examples that must be built for this driver to run."""
        return (self.example,)

    @property
    def binary(self) -> str:
        return EXAMPLES_BY_NAME[self.example].guest_path

    def run(self, ctx: DriverContext) -> str:
        raise NotImplementedError


def _token() -> str:
    return secrets.token_hex(4)


def _check(condition: bool, reason: str) -> None:
    if not condition:
        raise DriverFailure(reason)


# --- servers in the guest, clients on the host -------------------------------------------------------------


@dataclass(frozen=True)
class EchoTcp(Driver):
    """Three host clients at once, a short and a 64 KiB payload each (the example reads 1 KiB at a time)."""

    name: str = "echo"
    example: str = "echo"
    ports: tuple[tuple[str, int], ...] = (("tcp", 7101),)
    listen_port: int | None = None  # differs from the forwarded port only when a test breaks it on purpose

    def run(self, ctx: DriverContext) -> str:
        guest_port = self.ports[0][1]
        program = ctx.jobs.start(self.name, f"{self.binary} 0.0.0.0:{self.listen_port or guest_port}")
        ctx.jobs.wait_for(program, LISTENING, self.timeout)
        port = ctx.host_port(guest_port)
        deadline = ctx.deadline(self.timeout)
        connections = [tcp_connect(port, deadline) for _ in range(3)]
        route = f"127.0.0.1:{port} -> guest port {guest_port}"
        try:
            for number, conn in enumerate(connections):
                _echo_on(conn, f"hil-echo-{number}-{_token()}\n".encode(), deadline, ctx.log, route)
            bulk = bytes(range(256)) * 256
            for conn in connections:
                _echo_on(conn, bulk, deadline, ctx.log, route)
        finally:
            for conn in connections:
                conn.close()
        ctx.jobs.require_alive(program)
        return f"3 concurrent TCP connections through 127.0.0.1:{port} echoed short and 64 KiB payloads"


def _echo_on(conn: socket.socket, payload: bytes, deadline: float, log: DriverLog, route: str) -> None:
    conn.sendall(payload)
    got = read_exactly(conn, len(payload), deadline)
    log.note(f"echo {route}: sent {len(payload)} bytes, got {len(got)}")
    if not got:
        raise DriverFailure(f"no echo through {route}: the connection closed or stayed silent (no listener there?)")
    if got != payload:
        raise DriverFailure(f"wrong bytes through {route}: got {len(got)} bytes starting {got[:40]!r}, "
                            f"expected {len(payload)} starting {payload[:40]!r}")  # fmt: skip


@dataclass(frozen=True)
class EchoUdp(Driver):
    name: str = "echo-udp"
    example: str = "echo-udp"
    ports: tuple[tuple[str, int], ...] = (("udp", 7102),)

    def run(self, ctx: DriverContext) -> str:
        guest_port = self.ports[0][1]
        program = ctx.jobs.start(self.name, f"{self.binary} 0.0.0.0:{guest_port}")
        ctx.jobs.wait_for(program, LISTENING, self.timeout)
        port = ctx.host_port(guest_port, "udp")
        deadline = ctx.deadline(self.timeout)
        for number in range(5):
            payload = f"hil-udp-{number}-{_token()}".encode()
            got = udp_exchange(port, payload, deadline, ctx.log)
            _check(got == payload, f"wrong datagram back: got {got!r}, expected {payload!r}")
        output = ctx.jobs.wait_for(program, "Echoed ", self.timeout)
        ctx.jobs.require_alive(program)
        return f"5 datagrams through udp 127.0.0.1:{port} came back unchanged ({output.count('Echoed ')} echoes logged)"


@dataclass(frozen=True)
class TinyHttp(Driver):
    name: str = "tinyhttp"
    example: str = "tinyhttp"
    ports: tuple[tuple[str, int], ...] = (("tcp", 7103),)

    def run(self, ctx: DriverContext) -> str:
        guest_port = self.ports[0][1]
        program = ctx.jobs.start(self.name, f"{self.binary} 0.0.0.0:{guest_port}")
        ctx.jobs.wait_for(program, LISTENING, self.timeout)
        port = ctx.host_port(guest_port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout * ctx.factor)
        try:  # one keep-alive connection: the example's codec must frame request after request
            plain = _get(conn, "/plaintext", ctx.log)
            _check(plain == (200, "text/plain", b"Hello, World!"), f"GET /plaintext answered {plain}")
            body = _get(conn, "/json", ctx.log)
            _check(body[:2] == (200, "application/json"), f"GET /json answered {body}")
            _check(json.loads(body[2]) == {"message": "Hello, World!"}, f"GET /json body {body[2]!r}")
            missing = _get(conn, "/no-such-page", ctx.log)
            _check(missing == (404, None, b""), f"GET /no-such-page answered {missing}")
        except (OSError, http.client.HTTPException, ValueError) as err:
            raise DriverFailure(f"HTTP through 127.0.0.1:{port} failed: {err.__class__.__name__}: {err}") from err
        finally:
            conn.close()
        ctx.jobs.require_alive(program)
        return "GET /plaintext, /json and a missing page on one keep-alive connection: right statuses and bodies"


def _get(conn: http.client.HTTPConnection, path: str, log: DriverLog) -> tuple[int, str | None, bytes]:
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    log.note(f"GET {path} -> {response.status} {response.getheader('Content-Type')} {body!r}")
    return response.status, response.getheader("Content-Type"), body


@dataclass(frozen=True)
class TinyDb(Driver):
    name: str = "tinydb"
    example: str = "tinydb"
    ports: tuple[tuple[str, int], ...] = (("tcp", 7104),)

    def run(self, ctx: DriverContext) -> str:
        guest_port = self.ports[0][1]
        program = ctx.jobs.start(self.name, f"{self.binary} 0.0.0.0:{guest_port}")
        ctx.jobs.wait_for(program, LISTENING, self.timeout)
        port = ctx.host_port(guest_port)
        deadline = ctx.deadline(self.timeout)
        key = f"hil{_token()}"
        dialogue = (
            ("GET foo", "foo = bar"),
            (f"SET {key} first", f"set {key} = `first`, previous: None"),
            (f"GET {key}", f"{key} = first"),
            (f"SET {key} second value", f'set {key} = `second value`, previous: Some("first")'),
            ("GET nokey", "error: no key nokey"),
            ("BOGUS", "error: unknown command: BOGUS"),
        )
        with tcp_connect(port, deadline) as conn:
            for request, expected in dialogue:
                _ask(conn, request, expected, deadline, ctx.log)
        with tcp_connect(port, deadline) as conn:  # the database outlives a connection
            _ask(conn, f"GET {key}", f"{key} = second value", deadline, ctx.log)
        ctx.jobs.require_alive(program)
        return f"GET/SET/errors answered right on two connections through 127.0.0.1:{port}"


def _ask(conn: socket.socket, request: str, expected: str, deadline: float, log: DriverLog) -> None:
    conn.sendall(request.encode() + b"\n")
    answer = read_line(conn, deadline).decode(errors="replace")
    log.note(f"{request!r} -> {answer!r}")
    _check(answer == expected, f"{request!r} answered {answer!r}, expected {expected!r}")


@dataclass(frozen=True)
class Chat(Driver):
    """Two host clients: alice sees bob join and leave, and their messages are relayed both ways."""

    name: str = "chat"
    example: str = "chat"
    ports: tuple[tuple[str, int], ...] = (("tcp", 7105),)

    def run(self, ctx: DriverContext) -> str:
        guest_port = self.ports[0][1]
        program = ctx.jobs.start(self.name, f"{self.binary} 0.0.0.0:{guest_port}")
        ctx.jobs.wait_for(program, "server running on", self.timeout)
        port = ctx.host_port(guest_port)
        deadline = ctx.deadline(self.timeout)
        with tcp_connect(port, deadline) as alice:
            _join(alice, "alice", deadline, ctx.log)
            # Join notices go only to peers registered before them: bob connects once alice is one.
            ctx.jobs.wait_for(program, "alice has joined the chat", self.timeout)
            with tcp_connect(port, deadline) as bob:
                _join(bob, "bob", deadline, ctx.log)
                _expect_line(alice, "bob has joined the chat", deadline, ctx.log, "alice")
                alice.sendall(b"hello from alice\n")
                _expect_line(bob, "alice: hello from alice", deadline, ctx.log, "bob")
                bob.sendall(b"hi alice\n")
                _expect_line(alice, "bob: hi alice", deadline, ctx.log, "alice")
            _expect_line(alice, "bob has left the chat", deadline, ctx.log, "alice")
        ctx.jobs.require_alive(program)
        return "two clients: join and leave notices, messages relayed both ways"


def _join(conn: socket.socket, user: str, deadline: float, log: DriverLog) -> None:
    _expect_line(conn, "Please enter your username:", deadline, log, user)
    conn.sendall(user.encode() + b"\n")


def _expect_line(conn: socket.socket, expected: str, deadline: float, log: DriverLog, who: str) -> None:
    line = read_line(conn, deadline).decode(errors="replace")
    log.note(f"{who} got {line!r}")
    _check(line == expected, f"{who} got {line!r}, expected {expected!r}")


@dataclass(frozen=True)
class PrintEachPacket(Driver):
    """The host sends two packets and closes; the example's output must show exactly those bytes, then the FIN."""

    name: str = "print_each_packet"
    example: str = "print_each_packet"
    ports: tuple[tuple[str, int], ...] = (("tcp", 7106),)

    def run(self, ctx: DriverContext) -> str:
        guest_port = self.ports[0][1]
        program = ctx.jobs.start(self.name, f"{self.binary} 0.0.0.0:{guest_port}")
        ctx.jobs.wait_for(program, LISTENING, self.timeout)
        port = ctx.host_port(guest_port)
        sent = [f"hil-packet-{_token()}\n".encode(), f"hil-packet-{_token()}".encode()]
        with tcp_connect(port, ctx.deadline(self.timeout)) as conn:
            for packet in sent:
                conn.sendall(packet)
                time.sleep(0.5)  # apart, so they usually arrive as two reads (the check does not rely on it)
        output = ctx.jobs.wait_for(program, "Socket received FIN packet and closed connection", self.timeout)
        printed = b"".join(_rust_bytes(literal) for literal in re.findall(r'^bytes: b"(.*)"$', output, re.M))
        _check(printed == b"".join(sent), f"the guest printed {printed!r}, the host sent {b''.join(sent)!r}")
        ctx.jobs.require_alive(program)
        return f"the guest printed the {len(b''.join(sent))} bytes the host sent, then the FIN"


def _rust_bytes(literal: str) -> bytes:
    """Decode the inside of Rust's Debug form of a byte string (b"..."): \\n, \\r, \\t, \\0, \\\\, \\", \\xNN."""
    simple = {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"', "'": b"'"}
    out, index = bytearray(), 0
    while index < len(literal):
        char = literal[index]
        if char != "\\":
            out += char.encode()
            index += 1
        elif literal[index + 1] == "x":
            out.append(int(literal[index + 2 : index + 4], 16))
            index += 4
        else:
            out += simple[literal[index + 1]]
            index += 2
    return bytes(out)


@dataclass(frozen=True)
class Proxy(Driver):
    """host client -> forward -> proxy in the guest -> 10.0.2.2 -> a server on the host, and back."""

    name: str = "proxy"
    example: str = "proxy"
    ports: tuple[tuple[str, int], ...] = (("tcp", 7107),)

    def run(self, ctx: DriverContext) -> str:
        guest_port = self.ports[0][1]
        with HostServer("tcp", _upstream_reply(ctx)) as upstream:
            target = f"{GUEST_HOST_ADDRESS}:{upstream.port}"
            program = ctx.jobs.start(self.name, f"{self.binary} 0.0.0.0:{guest_port} {target}")
            ctx.jobs.wait_for(program, "Proxying to: ", self.timeout)
            port = ctx.host_port(guest_port)
            deadline = ctx.deadline(self.timeout)
            for number in range(2):
                line = f"through the proxy {number} {_token()}"
                reply = _proxied(port, line, deadline, ctx.log)
                if reply != _upstream_answer(line):
                    said = ctx.jobs.output(program).strip().splitlines()[-1:]
                    raise DriverFailure(f"the proxy returned {reply!r} for {line!r} (it said: {said})")
            _check(len(upstream.received) >= 2, f"the host server saw {len(upstream.received)} of 2 requests")
        ctx.jobs.require_alive(program)
        return f"2 requests via 127.0.0.1:{port} -> proxy -> {target} answered by the host server"


def _upstream_answer(line: str) -> bytes:
    return f"upstream: {line[::-1]}\n".encode()


def _upstream_reply(ctx: DriverContext) -> Callable[[socket.socket], bytes]:
    def reply(conn: socket.socket) -> bytes:
        line = read_line(conn, ctx.deadline(30)).decode()
        ctx.log.note(f"host server got {line!r}")
        conn.sendall(_upstream_answer(line))
        return line.encode()

    return reply


def _proxied(port: int, line: str, deadline: float, log: DriverLog) -> bytes:
    """Retry while the proxy is not yet bound (it prints before binding) and connections close empty."""
    while True:
        with tcp_connect(port, deadline) as conn:
            conn.sendall(line.encode() + b"\n")
            reply = read_to_end(conn, min(deadline, time.monotonic() + 15))
        log.note(f"sent {line!r} through the proxy, got {reply!r}")
        if reply or time.monotonic() > deadline:
            return reply
        time.sleep(0.3)


# --- clients in the guest, servers on the host -------------------------------------------------------------


@dataclass(frozen=True)
class ConnectTcp(Driver):
    name: str = "connect-tcp"
    example: str = "connect"

    def run(self, ctx: DriverContext) -> str:
        payload = f"hil-connect-{_token()}"
        with HostServer("tcp", _answer_upper(len(payload), ctx)) as server:
            target = f"{GUEST_HOST_ADDRESS}:{server.port}"
            done = ctx.jobs.run(f"sh -c {shlex.quote(f'printf %s {payload} | {self.binary} {target}')}", self.timeout)
        _check(server.received == [payload.encode()], f"the host server received {server.received!r}")
        _check(done.status == 0, f"connect exited with {done.status}: {done.output.strip()[-200:]!r}")
        _check(done.output.strip() == payload.upper(), f"connect printed {done.output.strip()!r}")
        return f"stdin -> {target} -> the host server's answer on stdout"


def _answer_upper(size: int, ctx: DriverContext) -> Callable[[socket.socket], bytes]:
    def answer(conn: socket.socket) -> bytes:
        got = read_exactly(conn, size, ctx.deadline(30))
        ctx.log.note(f"host server got {got!r}")
        conn.sendall(got.upper())
        return got

    return answer


@dataclass(frozen=True)
class ConnectUdp(Driver):
    name: str = "connect-udp"
    example: str = "connect"

    def run(self, ctx: DriverContext) -> str:
        payload = f"hil-connect-udp-{_token()}"
        with HostServer("udp", lambda data: data.upper()) as server:
            target = f"{GUEST_HOST_ADDRESS}:{server.port}"
            # It never exits by itself: the receiving half loops until the process is killed.
            program = ctx.jobs.start(self.name, f"{self.binary} --udp {target}", stdin=payload)
            output = ctx.jobs.wait_for(program, payload.upper(), self.timeout)
            ctx.jobs.stop(program)
        _check(payload.encode() in server.received, f"the host server received {server.received!r}")
        return f"a datagram to {target} and the host's answer printed ({len(output)} characters of output)"


@dataclass(frozen=True)
class UdpClient(Driver):
    name: str = "udp-client"
    example: str = "udp-client"

    def run(self, ctx: DriverContext) -> str:
        payload = f"hil-udp-client-{_token()}"
        with HostServer("udp", lambda data: data.upper()) as server:
            target = f"{GUEST_HOST_ADDRESS}:{server.port}"
            done = ctx.jobs.run(f"sh -c {shlex.quote(f'printf %s {payload} | {self.binary} {target}')}", self.timeout)
        _check(payload.encode() in server.received, f"the host server received {server.received!r}")
        expected = f"Received {len(payload)} bytes:\n{payload.upper()}"
        _check(done.status == 0 and expected in done.output, f"udp-client exited {done.status}: {done.output!r}")
        return f"a datagram to {target}, the host's answer printed"


@dataclass(frozen=True)
class HelloWorld(Driver):
    """It connects to the fixed 127.0.0.1:6142: tokio's proxy relays that to a listener on the host."""

    name: str = "hello_world"
    example: str = "hello_world"
    relay_port: int = 6142

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.example, "proxy")

    def run(self, ctx: DriverContext) -> str:
        with HostServer("tcp", _read_all(ctx)) as listener:
            relay = EXAMPLES_BY_NAME["proxy"].guest_path
            target = f"{GUEST_HOST_ADDRESS}:{listener.port}"
            program = ctx.jobs.start("hello_world-relay", f"{relay} 127.0.0.1:{self.relay_port} {target}")
            ctx.jobs.wait_for(program, "Proxying to: ", self.timeout)
            done = self._hello(ctx)
            deadline = ctx.deadline(self.timeout)
            while not listener.received and time.monotonic() < deadline:
                time.sleep(0.1)
            ctx.jobs.stop(program)
        _check("wrote to stream; success=true" in done.output, f"hello_world printed {done.output.strip()!r}")
        _check(listener.received == [b"hello world\n"], f"the host listener received {listener.received!r}")
        return f"'hello world' reached the host listener (relayed 127.0.0.1:6142 -> {target})"

    def _hello(self, ctx: DriverContext) -> CommandResult:
        for _ in range(5):  # the relay prints before it binds: a refused connection means "not yet"
            done = ctx.jobs.run(self.binary, self.timeout)
            if "Connection refused" not in done.output:
                return done
            time.sleep(0.5)
        return done


def _read_all(ctx: DriverContext) -> Callable[[socket.socket], bytes]:
    def read(conn: socket.socket) -> bytes:
        got = read_to_end(conn, ctx.deadline(30))
        ctx.log.note(f"host listener got {got!r}")
        return got

    return read


# --- programs that talk to themselves -------------------------------------------------------------------


@dataclass(frozen=True)
class UdpCodec(Driver):
    """Two sockets on the e1000's address play PING/PONG (guest-local traffic: the example takes one address)."""

    name: str = "udp-codec"
    example: str = "udp-codec"

    def run(self, ctx: DriverContext) -> str:
        done = ctx.jobs.run(f"{self.binary} {GUEST_ADDRESS}:0", self.timeout)
        pings, pongs = done.output.count("[b] recv: PING"), done.output.count("[a] recv: PONG")
        summary = f"exit {done.status}, {pings} PINGs and {pongs} PONGs received"
        _check(done.status == 0 and "done!" in done.output, f"udp-codec did not finish: {summary}")
        _check(pings == 5 and pongs == 4, f"udp-codec: {summary}, expected 5 and 4")
        return f"bound twice to {GUEST_ADDRESS}: {summary}"


@dataclass(frozen=True)
class CustomExecutor(Driver):
    """A futures thread pool with tokio's context: binds a listener from it and runs to completion."""

    name: str = "custom-executor"
    example: str = "custom-executor"

    def run(self, ctx: DriverContext) -> str:
        done = ctx.jobs.run(self.binary, self.timeout)
        _check(done.status == 0, f"{self.example} exited {done.status}: {done.output.strip()[-200:]!r}")
        match = re.search(r"addr: Ok\(0\.0\.0\.0:(\d+)\)", done.output)
        _check(match is not None, f"{self.example} printed {done.output.strip()!r}, expected addr: Ok(0.0.0.0:PORT)")
        assert match is not None
        return f"ran to completion, bound 0.0.0.0:{match.group(1)}"


DRIVERS: tuple[Driver, ...] = (
    EchoTcp(),
    EchoUdp(),
    TinyHttp(),
    TinyDb(),
    Chat(),
    PrintEachPacket(),
    Proxy(),
    ConnectTcp(),
    ConnectUdp(),
    UdpClient(),
    HelloWorld(),
    UdpCodec(),
    CustomExecutor(),
    CustomExecutor(name="custom-executor-tokio-context", example="custom-executor-tokio-context"),
)

DRIVERS_BY_NAME: dict[str, Driver] = {driver.name: driver for driver in DRIVERS}
FIXED_FIELDS = ("name", "example")  # what makes a driver the one it is; the other fields are its settings


class DriverSpecError(ValueError):
    """A `driver` step names no driver or a setting it lacks: `key`, the problem and the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"key '{key}': {problem}. Fix: {fix}")


def driver_named(name: str, settings: dict[str, object] | None = None) -> Driver:
    """The built-in driver `name` with `settings` changed (a scenario's `driver` step); DriverSpecError
    for an unknown name, an unknown setting or a setting of the wrong type."""
    if name not in DRIVERS_BY_NAME:
        raise DriverSpecError("driver", f"is {name!r}, not a known driver", f"use one of {', '.join(DRIVERS_BY_NAME)}")
    driver = DRIVERS_BY_NAME[name]
    settable = {field.name: getattr(driver, field.name) for field in fields(driver) if field.name not in FIXED_FIELDS}
    for key, value in (settings or {}).items():
        if key not in settable:
            raise DriverSpecError(f"settings.{key}", f"is not a setting of driver {name}",
                                  f"use {', '.join(settable) or 'none'}")  # fmt: skip
        if not _fits(value, settable[key]):
            raise DriverSpecError(f"settings.{key}", f"is {value!r}", f"give a value like {_plain(settable[key])!r}")
    converted = {key: _as_field(value, settable[key]) for key, value in (settings or {}).items()}
    return replace(driver, **converted)


def settings_of(driver: Driver) -> dict[str, object]:
    """What `driver` changes from the built-in driver of its name (to write it into a scenario)."""
    default = DRIVERS_BY_NAME[driver.name]
    changed = {f.name: getattr(driver, f.name) for f in fields(driver) if f.name not in FIXED_FIELDS}
    return {key: _plain(value) for key, value in changed.items() if value != getattr(default, key)}


def _fits(value: object, default: object) -> bool:
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int | float) or default is None:
        return isinstance(value, int | float)
    return isinstance(value, list) if isinstance(default, tuple) else isinstance(value, type(default))


def _as_field(value: object, default: object) -> object:
    """TOML gives lists where drivers keep tuples (ports: [["tcp", 7101]])."""
    if isinstance(value, list):
        return tuple(tuple(item) if isinstance(item, list) else item for item in value)
    return value


def _plain(value: object) -> object:
    return [list(item) if isinstance(item, tuple) else item for item in value] if isinstance(value, tuple) else value


def forwards(drivers: tuple[Driver, ...] | list[Driver]) -> tuple[tuple[str, int], ...]:
    """Every guest port the drivers need forwarded, once each."""
    return tuple(dict.fromkeys(port for driver in drivers for port in driver.ports))
