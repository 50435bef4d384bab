"""The host's side of the traffic: clients of forwarded guest ports, and servers the guest reaches at 10.0.2.2.

QEMU's user-mode network accepts a connection to a forwarded port even when nothing listens in the guest,
then closes it; so a client that got nothing back retries until its deadline and then says so. Servers
bind to 127.0.0.1 (the guest sees them at 10.0.2.2), serve from a thread, and record what they received.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from hil import netio
from hil.tokio.guest import DriverFailure, DriverLog

RETRY_PAUSE_S = 0.3


def tcp_connect(port: int, deadline: float) -> socket.socket:
    """A connection to 127.0.0.1:port (a forward); DriverFailure once the deadline passes."""
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=max(0.5, deadline - time.monotonic()))
        except OSError as err:
            problem = f"{err.__class__.__name__}: {err}"
            time.sleep(RETRY_PAUSE_S)
    raise DriverFailure(f"cannot connect to the forward 127.0.0.1:{port}: {problem}")


def udp_exchange(port: int, payload: bytes, deadline: float, log: DriverLog) -> bytes:
    """Send a datagram to a forwarded UDP port until an answer comes back (datagrams may be lost)."""
    got = netio.udp_exchange(port, payload, deadline)
    if got is None:
        raise DriverFailure(f"no UDP answer through 127.0.0.1:{port} to {_show(payload)}")
    log.note(f"udp 127.0.0.1:{port}: sent {_show(payload)}, got {_show(got)}")
    return got


class HostServer:
    """A server on 127.0.0.1 (the guest's 10.0.2.2) that records what it received and from where.

    TCP: `handler(conn)` serves one connection and returns the bytes it read. UDP: `handler(datagram)`
    returns the reply to send back, or None.
    """

    def __init__(self, proto: str, handler: Callable[..., bytes | None]) -> None:
        self.proto = proto
        self.handler = handler
        self.received: list[bytes] = []
        self.peers: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        if proto == "tcp":
            self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"hil-host-{proto}-{self.port}", daemon=True)
        self._thread.start()

    def __enter__(self) -> HostServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                if self.proto == "tcp":
                    conn, peer = self.sock.accept()
                    threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()
                else:
                    data, peer = self.sock.recvfrom(65536)
                    self.received.append(data)
                    reply = self.handler(data)
                    if reply is not None:
                        self.sock.sendto(reply, peer)
                self.peers.append(f"{peer[0]}:{peer[1]}")
            except TimeoutError:
                continue
            except OSError:
                return

    def _serve_connection(self, conn: socket.socket) -> None:
        with conn:
            try:
                got = self.handler(conn)
            except OSError:
                return
            if got:
                self.received.append(got)


def _show(data: bytes, limit: int = 60) -> str:
    return repr(data[:limit]) + ("..." if len(data) > limit else "")
