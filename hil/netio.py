"""Small, deadline-bounded socket reads and UDP exchanges shared by host steps and the tokio drivers.

QEMU's user-mode network accepts a connection to a forwarded port even when nothing listens in the guest,
then resets or closes it, so every read here treats a reset like a close and returns what it got.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

MIN_WAIT = 0.05


def recv_until(conn: socket.socket, deadline: float, done: Callable[[bytes], bool], chunk: int = 65536) -> bytes:
    """Bytes until `done(got)`, the peer closes or resets, or the deadline passes."""
    got = b""
    while not done(got) and time.monotonic() < deadline:
        conn.settimeout(max(MIN_WAIT, deadline - time.monotonic()))
        try:
            data = conn.recv(chunk)
        except (TimeoutError, ConnectionError):
            break
        if not data:
            break
        got += data
    return got


def read_exactly(conn: socket.socket, size: int, deadline: float) -> bytes:
    """Up to `size` bytes; fewer when the peer closes or the deadline passes."""
    return recv_until(conn, deadline, lambda got: len(got) >= size)


def read_to_end(conn: socket.socket, deadline: float) -> bytes:
    return recv_until(conn, deadline, lambda got: False)


def read_line(conn: socket.socket, deadline: float) -> bytes:
    """One line (without its newline); b"" if the peer closed or the deadline passed first."""
    got = recv_until(conn, deadline, lambda got: got.endswith(b"\n"), chunk=1)
    return got.rstrip(b"\r\n") if got.endswith(b"\n") else b""


def udp_exchange(port: int, payload: bytes, deadline: float) -> bytes | None:
    """Send a datagram to 127.0.0.1:port until an answer comes back (datagrams may be lost); None if none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        while time.monotonic() < deadline:
            sock.sendto(payload, ("127.0.0.1", port))
            sock.settimeout(min(1.0, max(MIN_WAIT, deadline - time.monotonic())))
            try:
                return sock.recvfrom(65536)[0]
            except (TimeoutError, ConnectionError):
                continue  # the guest's listener may not be up yet: datagrams are cheap to resend
    return None
