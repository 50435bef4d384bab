"""What the initfs probe runs: its cases in order, its build variants, and the register-dump layout.

The build turns these into the generated header the C sources include, and the register-dump decoder reads
them back, so the case list exists once.
"""

from __future__ import annotations

from dataclasses import dataclass

from hil.initfs_probe.abi import ABIS

PROGRAM = "hil-initfs-probe"
VERSION = 1

CASES: tuple[str, ...] = (
    "syscall_path",
    "nanosleep",
    "sched_yield",
    "futex_timeout",
    "futex_timeout_cleanup",
    "mmap_anon",
    "thread_spawn",
    "futex_wake",
    "futex_wake_timeout",
    "scheme_create",
    "scheme_open_close",
    "scheme_out_of_order",
    "sched_stress",
    "io_privilege",
    "cpu_count",
)

# The redox-nvme variant: the probe as a minimal NVMe driver (src/nvme.c, src/depth.c). It needs contexts and
# port I/O first; cpu_count says how many CPUs the kernel brought up.
NVME_CASES: tuple[str, ...] = (
    "thread_spawn",
    "io_privilege",
    "cpu_count",
    "nvme_pci",
    "nvme_bar_map",
    "nvme_enable",
    "nvme_identify",
    "nvme_io_queue",
    "nvme_read_verify",
    "nvme_write_readback",
    "nvme_irq_intx",
    "nvme_irq_msix",
    "nvme_scheme",
    "depth_1",
    "depth_8",
    "depth_32",
    "depth_64",
    "nvme_cancel",
)

# The redox-e1000 variant: the probe as a minimal e1000 driver on QEMU's user network (src/e1000.c).
E1000_CASES: tuple[str, ...] = (
    "thread_spawn",
    "io_privilege",
    "cpu_count",
    "e1000_pci",
    "e1000_bar_map",
    "e1000_reset_mac",
    "e1000_rings",
    "e1000_link",
    "e1000_arp",
    "e1000_udp_to_host",
    "e1000_tcp_to_host",
    "e1000_udp_echo",
    "e1000_irq_intx",
    "e1000_counters",
)
# The redox-xhci variant (src/xhci.c): controller, capabilities, reset, root-hub ports, rings, then each
# device enumerated, a block read from the usb-storage, and that device unplugged and plugged back by the host.
XHCI_CASES: tuple[str, ...] = ("thread_spawn", "io_privilege", "cpu_count", "xhci_pci", "xhci_caps", "xhci_reset",
                               "xhci_ports", "xhci_noop", "xhci_enumerate", "xhci_storage_read", "xhci_unplug",
                               "xhci_replug")
# What the probe prints on the console to have the host act (the console_probe step's *_on_request keys).
HOST_REQUEST_PREFIX = "hil-request: "
HOST_REQUESTS = ("unplug", "replug")
# The fw_cfg item that carries what changes every run (the host listeners' ports), "key=value;...": the probe
# reads it through QEMU's fw_cfg ports, so its build, and the disk holding it, stay the same from run to run.
RUN_VALUES_FW_CFG = "opt/hil/run"
# What the probe sends to the host's listeners; the scenario's host steps check these bytes.
E1000_UDP_PAYLOAD = "hil e1000 udp from the initfs probe"
E1000_TCP_PAYLOAD = "hil e1000 tcp from the initfs probe"


@dataclass(frozen=True)
class Variant:
    """A build of the probe: the same cases, with the scheduler stress sized for its purpose."""

    name: str
    stress_seconds: float
    stress_threads: int
    description: str
    cases: tuple[str, ...] = CASES

    @property
    def beat_ms(self) -> int:
        """Heartbeat interval: a second, or a quarter of a shorter stress (so 'no beat without progress' means
        something in a quick gate run too)."""
        return min(1000, max(25, round(self.stress_seconds * 250)))

    @property
    def beats(self) -> int:
        return max(1, round(self.stress_seconds * 1000 / self.beat_ms))


@dataclass(frozen=True)
class NvmeTarget:
    """What hil configured for the NVMe controller the redox-nvme variant checks (Identify, the known content)."""

    serial: str
    size_bytes: int
    seed: int = 0


@dataclass(frozen=True)
class E1000Target:
    """What hil configured for the e1000 the redox-e1000 variant drives: its MAC, the host's listeners on
    127.0.0.1 (reached as 10.0.2.2), and the guest UDP port the host sends to for an echo."""

    mac: str
    host_udp_port: int = 0
    host_tcp_port: int = 0
    echo_port: int = 7001

    def run_values(self) -> dict[str, int]:
        """Its part of RUN_VALUES_FW_CFG: the host ports, kept out of the build because they change every run."""
        return {"e1000.udp_port": self.host_udp_port, "e1000.tcp_port": self.host_tcp_port}


def run_values_text(values: dict[str, int]) -> str:
    """RUN_VALUES_FW_CFG's content, "key=value;...", as the probe's run_value() parses it."""
    return ";".join(f"{key}={value}" for key, value in values.items())


@dataclass(frozen=True)
class XhciTarget:
    """The first xHCI hil attaches and how many USB devices hang on it at boot; their USB ids (idVendor << 16 |
    idProduct) as QEMU emulates them, the usb-storage's known-content seed (None without one), and whether the
    console_probe step unplugs and plugs it back when the probe asks."""

    model: str
    devices: int
    ids: tuple[int, ...] = ()
    storage_seed: int | None = None
    unplug: bool = False
    replug: bool = False


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("kernel-smoke", 0.4, 8, "every case once, quickly (under 1 s of guest time)"),
        Variant("sched-stress", 30, 32, "the same cases, with 32 contexts hammering the scheduler for 30 s"),
        Variant("redox-nvme", 2, 8, "a minimal NVMe driver: PCI, BAR, DMA queues, Identify, I/O, IRQs, depths",
                NVME_CASES),
        Variant("redox-e1000", 2, 8, "a minimal e1000 driver: PCI, BAR, MAC, rings, ARP, UDP, TCP, INTx",
                E1000_CASES),
        Variant("redox-xhci", 2, 8, "xHCI: PCI, reset, ports, rings, enumeration, a usb-storage read, unplug/replug",
                XHCI_CASES),
    )
}
DEFAULT_VARIANT = "kernel-smoke"
MAX_STRESS_THREADS = 40  # the runtime has 80 thread stacks; the other cases use up to 16
MIN_STRESS_SECONDS = 0.1

CHANNELS = ("debug", "regdump")  # debug: /scheme/debug lines; regdump: results in a fault's register dump

# The register-dump channel (see regdump.py): a deliberate invalid-opcode fault with these registers.
REGDUMP_MAGIC = 0x48494C50524F4245  # "HILPROBE"
REGDUMP_LAYOUT = 1
# The metrics that fit in r8..r15, as "case.key" and unit; values travel in thousandths.
REGDUMP_METRICS: tuple[tuple[str, str], ...] = (
    ("syscall_path.clock_gettime_us", "us"),
    ("nanosleep.elapsed_us", "us"),
    ("sched_yield.yield_us", "us"),
    ("futex_timeout.elapsed_us", "us"),
    ("thread_spawn.spawn_us", "us"),
    ("futex_wake.wake_latency_us", "us"),
    ("scheme_out_of_order.ooo_completions", "count"),
    ("sched_stress.rounds", "count"),
)


def build_id(variant: str, abi_name: str) -> int:
    """The id the register dump carries in rbp: layout version, ABI index, variant index."""
    return (REGDUMP_LAYOUT << 16) | (list(ABIS).index(abi_name) << 8) | list(VARIANTS).index(variant)
