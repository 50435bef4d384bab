from pathlib import Path

from hil.devices.net import E1000
from hil.qemu.spec import MachineSpec, RunPaths

PATHS = RunPaths(Path("/s/qmp.sock"), Path("/s/serial.sock"), Path("/r/serial.log"), initrd=Path("/i"))


def test_argv_starts_paused_with_qmp_and_logged_serial() -> None:
    argv = MachineSpec(kernel=Path("/k"), initrd=(Path("/i"),), append="console=ttyS0").argv(PATHS)
    assert argv[0] == "qemu-system-x86_64" and "-S" in argv
    assert "socket,id=hil-qmp,path=/s/qmp.sock,server=on,wait=off" in argv
    serial = argv[argv.index("-chardev", argv.index("-mon")) + 1]
    assert "logfile=/r/serial.log" in serial and "path=/s/serial.sock" in serial
    assert argv[argv.index("-kernel") + 1] == "/k" and argv[argv.index("-append") + 1] == "console=ttyS0"


def test_digest_changes_with_any_field() -> None:
    base = MachineSpec(kernel=Path("/k"))
    assert base.digest() == MachineSpec(kernel=Path("/k")).digest()
    assert base.digest() != base.with_changes(smp=4).digest()
    assert base.digest() != base.with_changes(extra_args=("-no-reboot",)).digest()


def test_forwarded_ports_bind_loopback_only() -> None:
    nic = E1000("net0", (("tcp", 22), ("udp", 7)))
    netdev = nic.qemu_args()[1]
    assert netdev.count("127.0.0.1") == 2
    assert f"hostfwd=tcp:127.0.0.1:{nic.host_port(22)}-:22" in netdev
    assert nic.host_port(7, "udp") != nic.host_port(22)
