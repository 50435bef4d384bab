"""Networking devices: e1000 on QEMU's user-mode network, forwarded ports bound to 127.0.0.1 only."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


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


@dataclass(frozen=True)
class E1000:
    """An Intel e1000 NIC on a user-mode netdev."""

    id: str = "hil-net0"
    forwards: tuple[Forward, ...] = field(default_factory=tuple)

    @classmethod
    def with_forwards(cls, *guest_ports: tuple[str, int], id: str = "hil-net0") -> E1000:
        return cls(id=id, forwards=tuple(Forward(proto, free_port(proto), port) for proto, port in guest_ports))

    def qemu_args(self) -> tuple[str, ...]:
        netdev = ",".join([f"user,id={self.id}", *(f.hostfwd() for f in self.forwards)])
        return ("-netdev", netdev, "-device", f"e1000,netdev={self.id},id={self.id}-nic")

    def host_port(self, guest_port: int, proto: str = "tcp") -> int:
        for forward in self.forwards:
            if forward.guest_port == guest_port and forward.proto == proto:
                return forward.host_port
        raise KeyError(f"no {proto} forward to guest port {guest_port}")
