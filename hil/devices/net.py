"""Networking devices: e1000 on QEMU's user-mode network, forwarded ports bound to 127.0.0.1 only."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from hil.devices.base import Device

GUEST_HOST_ADDRESS = "10.0.2.2"  # how a guest on QEMU's user network reaches the host's loopback
GUEST_ADDRESS = "10.0.2.15"
DEFAULT_MAC = "52:54:00:68:69:6c"  # 52:54:00 is QEMU's prefix; 68:69:6c spells "hil"


def free_port(kind: str = "tcp") -> int:
    """A port free on 127.0.0.1 right now (the kernel picks it, so parallel runs don't collide by design)."""
    sock_type = socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, sock_type) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Forward:
    """A host port on 127.0.0.1 forwarded to a guest port."""

    proto: str
    host_port: int
    guest_port: int

    def hostfwd(self) -> str:
        return f"hostfwd={self.proto}:127.0.0.1:{self.host_port}-:{self.guest_port}"


class E1000(Device):
    """An Intel e1000 NIC on a user-mode netdev, with host ports picked free for each run."""

    kind = "e1000"

    def __init__(self, id: str = "net0", forwards: tuple[tuple[str, int], ...] = (), mac: str = DEFAULT_MAC,
                 listen: tuple[str, ...] = ()) -> None:
        super().__init__(id)
        self.mac = mac
        self.forwards: list[Forward] = []
        for proto, guest_port in forwards:
            self.forward(proto, guest_port)
        # Host listeners on 127.0.0.1 a guest reaches as 10.0.2.2 without being told a port at run time
        # (a guest that cannot be given commands, like the initfs probe, is built with them).
        self.listeners: dict[str, int] = {proto: free_port(proto) for proto in listen}

    def forward(self, proto: str, guest_port: int) -> Forward:
        """Add (or return the existing) forward of a guest port; only valid before QEMU starts."""
        if proto not in ("tcp", "udp"):
            raise ValueError(f"forward protocol must be tcp or udp, not {proto!r}")
        for existing in self.forwards:
            if (existing.proto, existing.guest_port) == (proto, guest_port):
                return existing
        added = Forward(proto, free_port(proto), guest_port)
        self.forwards.append(added)
        return added

    def qemu_args(self) -> tuple[str, ...]:
        netdev = ",".join([f"user,id={self.id}-netdev", *(f.hostfwd() for f in self.forwards)])
        return ("-netdev", netdev, "-device", f"e1000,netdev={self.id}-netdev,id={self.id},mac={self.mac}")

    def listener_port(self, proto: str) -> int:
        if proto not in self.listeners:
            raise KeyError(f"{self.describe()} has no {proto} host listener (add listen = [\"{proto}\"])")
        return self.listeners[proto]

    def host_port(self, guest_port: int, proto: str = "tcp") -> int:
        for forward in self.forwards:
            if forward.guest_port == guest_port and forward.proto == proto:
                return forward.host_port
        raise KeyError(f"{self.describe()} has no {proto} forward to guest port {guest_port}")
